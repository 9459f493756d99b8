"""The Edit tab: upload an image, invert it with the runs' source generator, see it through the
chosen runs' adapted generators side by side, and make a morph video frozen → run₁ → run₂ → ….

Inversions and videos are jobs on the app's one queue (a training waits its turn, and so do
they); their files live in the scratch folder and the page never shows a server path."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..errors import ConfigError, NadaError
from .context import AppContext
from .jobs import DONE, Job
from .training import for_display, message_html, status_html

log = logging.getLogger(__name__)

MAX_RUNS = 6


@dataclass(frozen=True)
class EditForm:
    """What the page sends for one edit."""

    image: str | None           # the uploaded file (Gradio's temp path)
    runs: tuple[str, ...]       # run names, as listed
    steps: int = 200
    wplus: bool = True


def edit_runs(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, name) of the finished `nada train` runs that have a generator or domain file."""
    from ..hub import run_product

    return [(r.label, r.name) for r in ctx.list_runs(finished_only=True) if run_product(ctx.run_dir(r.name))]


def _run_generators(ctx: AppContext, names: tuple[str, ...]):
    from ..invert.edit import read_run, source_of

    if not names:
        raise ConfigError("no run chosen", "tick one or more runs (Refresh updates the list)")
    if len(names) > MAX_RUNS:
        raise ConfigError(f"{len(names)} runs chosen", f"choose at most {MAX_RUNS}")
    runs = [read_run(ctx.run_dir(n)) for n in names]  # names checked against the runs folder
    return runs, source_of(runs)


def _edit_job(ctx: AppContext, form: EditForm, runs, source: str, hooks):
    """Worker side: invert the image, render it through every run; the collage and latents
    land in the scratch folder."""
    import numpy as np
    from PIL import Image

    from ..app.compare import source_generator_path
    from ..checkpoints import atomic_write, load_generator
    from ..device import resolve_device
    from ..invert.api import Inversion, invert_arrays, load_inputs, write_inversion
    from ..invert.config import InvertConfig
    from ..invert.edit import collage, load_run_generators, render

    device = resolve_device(ctx.device)
    src_path = source_generator_path(source)
    G = load_generator(src_path, device=device).generator
    gens = load_run_generators(G, runs, device)
    inputs, targets, how = load_inputs([form.image], G.img_resolution, "auto", source)
    cfg = InvertConfig(steps=form.steps, wplus=form.wplus)
    proj = invert_arrays(G, targets, cfg, progress=False, stop=lambda: hooks.stopping,
                         on_step=lambda done, total, loss: hooks.step({"iter": done, "loss": loss}, total))
    if hooks.stopping:  # Stop: nothing to show for a half-done inversion
        return None
    out = Path(ctx.scratch_file(".inv")).with_suffix("")
    inv = Inversion(["image"], targets, proj, how, [inputs[0].notes])
    metrics = write_inversion(out, inv, src_path, cfg, save_inputs=False, generator_label=source)
    columns = [("input", targets), ("reconstruction", render(G, proj.ws, proj.noise))]
    columns += [(label, render(Ga, proj.ws, proj.noise)) for label, Ga in gens]
    grid = collage(columns, cell=max(128, G.img_resolution) if G.img_resolution <= 256 else 256)
    png = out / "collage.png"
    atomic_write(png, lambda tmp: Image.fromarray(np.ascontiguousarray(grid)).save(tmp, format="PNG"))
    return {"dir": out, "collage": png, "latents": out / "latents.safetensors", "metrics": metrics,
            "runs": form.runs, "notes": inputs[0].notes, "source": source}


def submit_edit(ctx: AppContext, form: EditForm, owner: str | None = None) -> Job:
    """Check everything (the image, the runs, the options), then queue the inversion."""
    from ..invert.config import InvertConfig
    from ..invert.images import read_image

    if not form.image:
        raise ConfigError("no image uploaded", "drop an image into the box first")
    read_image(form.image)
    InvertConfig(steps=int(form.steps), wplus=bool(form.wplus))
    runs, source = _run_generators(ctx, tuple(form.runs))
    return ctx.jobs.submit(functools.partial(_edit_job, ctx, form, runs, source), name="invert + edit", owner=owner)


def _video_job(ctx: AppContext, latents: Path, names: tuple[str, ...], frames: int, fps: int, loop: bool, hooks):
    from ..app.compare import source_generator_path
    from ..checkpoints import load_generator
    from ..device import resolve_device
    from ..invert.edit import load_inversion, load_run_generators
    from ..video import VideoConfig, morph_frames, write_video

    runs, source = _run_generators(ctx, names)
    device = resolve_device(ctx.device)
    G = load_generator(source_generator_path(source), device=device).generator
    gens = [G] + [Ga for _, Ga in load_run_generators(G, runs, device)]
    ws, noise = load_inversion(latents, G.num_ws, G.w_dim)
    cfg = VideoConfig(frames=frames, fps=fps, loop=loop, size=max(128, G.img_resolution) if G.img_resolution <= 256 else 256)

    def counted():
        for i, frame in enumerate(morph_frames(gens, ws, cfg, noise)):
            if hooks.stopping:
                return
            hooks.step({"iter": i + 1}, cfg.frames)
            yield frame

    path = ctx.scratch_file(".mp4")
    try:
        info = write_video(path, counted(), cfg, progress=False)
    except ConfigError:
        if hooks.stopping:  # stopped before the first frame
            return None
        raise
    return None if hooks.stopping else {"video": path, **info}


def submit_video(ctx: AppContext, state: dict | None, frames: int, fps: int, loop: bool, owner: str | None = None) -> Job:
    """Queue a morph video of the last inversion through its runs."""
    from ..video import VideoConfig

    if not state or not Path(state.get("latents", "")).is_file():
        raise ConfigError("nothing inverted yet", "press Invert and show first")
    VideoConfig(frames=int(frames), fps=int(fps), loop=bool(loop))
    return ctx.jobs.submit(functools.partial(_video_job, ctx, Path(state["latents"]), tuple(state["runs"]), int(frames),
                                             int(fps), bool(loop)), name="morph video", owner=owner)


def result_markdown(result: dict) -> str:
    m = result["metrics"]
    notes = "".join(f" ({n})" for n in result.get("notes") or [])
    return (f"Reconstruction: PSNR {m['mean_psnr_db']:.1f} dB, pixel MSE {m['mean_pixel_mse']:.4f} "
            f"({m['space']}, {m['steps']} steps, loss {m['loss']}, {m['seconds']:.1f} s){notes}. "
            f"Columns: input, reconstruction, " + ", ".join(result["runs"]) + ".")


def build_edit_tab(ctx: AppContext):
    from ..invert.config import InvertConfig

    d = InvertConfig()
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("**Edit a real image**: invert it with the runs' source generator, then see it in every "
                        "chosen domain, and make a morph video.")
            image = gr.Image(type="filepath", label="image", sources=["upload"], elem_id="nada-e-image", height=220)
            runs = gr.CheckboxGroup(edit_runs(ctx), label="runs (finished `nada train` runs of one source generator)",
                                    elem_id="nada-e-runs")
            with gr.Row():
                steps = gr.Slider(10, 1000, value=d.steps, step=10, label="inversion steps", elem_id="nada-e-steps")
                wplus = gr.Checkbox(d.wplus, label="W+ (one w per layer)", elem_id="nada-e-wplus")
            with gr.Row():
                go = gr.Button("Invert and show", variant="primary", elem_id="nada-e-go")
                stop = gr.Button("Stop", variant="stop", elem_id="nada-e-stop")
                refresh = gr.Button("Refresh runs", size="sm")
            status = gr.HTML("", elem_id="nada-e-status")
        with gr.Column(scale=2, min_width=320):
            grid = gr.Image(label="input · reconstruction · runs", interactive=False, type="numpy",
                            elem_id="nada-e-collage")
            caption = gr.Markdown("", elem_id="nada-e-caption")
            dl = gr.DownloadButton("latents (.safetensors)", visible=False, size="sm", elem_id="nada-e-dl")
            with gr.Row():
                frames = gr.Slider(10, 240, value=60, step=1, label="video frames", elem_id="nada-e-frames")
                fps = gr.Slider(1, 60, value=24, step=1, label="fps")
                loop = gr.Checkbox(True, label="loop back")
            make = gr.Button("Make video", elem_id="nada-e-make")
            vstatus = gr.HTML("", elem_id="nada-e-vstatus")
            video = gr.Video(label="frozen → runs (weights blended)", interactive=False, elem_id="nada-e-video")
    state = gr.State(None)

    def lists(current=None):
        choices = edit_runs(ctx)
        names = [n for _, n in choices]
        keep = [n for n in (current or []) if n in names] or names[:2]
        return gr.update(choices=choices, value=keep)

    def on_go(img, names, n_steps, wp, st, request: gr.Request):
        form = EditForm(image=img, runs=tuple(names or ()), steps=int(n_steps), wplus=bool(wp))
        hidden = gr.update(visible=False, value=None)
        try:
            job = submit_edit(ctx, form, owner=getattr(request, "session_hash", None))
        except NadaError as exc:
            yield message_html(str(exc)), gr.skip(), "", hidden, st
            return
        except Exception as exc:  # a bug: one line on the page, the traceback in the log
            log.exception("edit failed to start")
            yield message_html(f"internal error: {type(exc).__name__}: {exc}"), gr.skip(), "", hidden, st
            return
        for snap in job.watch():
            if not snap.finished:
                yield status_html(snap, ctx, resumable=False), gr.skip(), gr.skip(), gr.skip(), st
                continue
            if snap.state != DONE or not snap.result:
                yield status_html(snap, ctx, resumable=False), gr.skip(), "", hidden, st
                return
            res = snap.result
            from .training import read_png

            picture = read_png(res["collage"])
            yield (status_html(snap, ctx, resumable=False), for_display(picture, tile=999), result_markdown(res),
                   gr.update(value=str(res["latents"]), visible=True), {"latents": str(res["latents"]), "runs": list(res["runs"])})

    def on_make(st, n_frames, n_fps, lp, request: gr.Request):
        try:
            job = submit_video(ctx, st, n_frames, n_fps, lp, owner=getattr(request, "session_hash", None))
        except NadaError as exc:
            yield message_html(str(exc)), gr.skip()
            return
        except Exception as exc:
            log.exception("video failed to start")
            yield message_html(f"internal error: {type(exc).__name__}: {exc}"), gr.skip()
            return
        for snap in job.watch():
            if not snap.finished:
                yield status_html(snap, ctx, resumable=False), gr.skip()
                continue
            if snap.state != DONE or not snap.result:
                yield status_html(snap, ctx, resumable=False), gr.skip()
                return
            r = snap.result
            yield message_html(f"{r['frames']} frames, {r['width']}x{r['height']}, {r['seconds']:.1f} s", "note"), \
                str(r["video"])

    def on_stop(request: gr.Request):
        """Stop this visitor's inversion or video (the queue's other jobs are not theirs)."""
        jobs = ctx.jobs.jobs_of(getattr(request, "session_hash", None))
        for job in jobs:
            job.stop()
        return gr.skip() if jobs else message_html("nothing of yours is running", "note")

    go.click(on_go, [image, runs, steps, wplus, state], [status, grid, caption, dl, state], api_name="edit",
             concurrency_limit=None)
    stop.click(on_stop, None, [status], api_name="edit_stop", concurrency_limit=None)
    make.click(on_make, [state, frames, fps, loop], [vstatus, video], api_name="edit_video", concurrency_limit=None)
    refresh.click(lists, [runs], [runs], api_name="edit_runs", concurrency_limit=None)
    return lists, [runs], [runs]
