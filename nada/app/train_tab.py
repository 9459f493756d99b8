"""The Train tab: choose generator, texts or style images, CLIP models and iterations; Start
streams progress and previews while the run trains in the job runner; Stop leaves it resumable;
a finished run shows its evaluation and download buttons."""

from __future__ import annotations

import logging

import gradio as gr

from ..errors import NadaError
from .context import AppContext
from .jobs import DONE, STOPPED
from .training import (
    CLIP_CHOICES,
    IMAGES,
    KNOWN,
    SHAPES,
    TEXT,
    UPLOAD,
    TrainForm,
    for_display,
    message_html,
    read_png,
    status_html,
    submit_resume,
    submit_training,
)

log = logging.getLogger(__name__)


def build_train_tab(ctx: AppContext) -> None:
    from ..adapt import PRESETS
    from ..hub import KNOWN as HUB

    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gen_kind = gr.Radio([("embedded shapes world", SHAPES), ("known checkpoint", KNOWN),
                                 ("upload a checkpoint", UPLOAD)], value=SHAPES, label="generator")
            known = gr.Dropdown(list(HUB), value=next(iter(HUB)), label="known checkpoint (downloaded on first use)",
                                visible=False)
            upload = gr.File(label="generator checkpoint (.pt, .pkl, .safetensors)", file_count="single",
                             visible=False, elem_id="nada-upload")
            upload_note = gr.HTML("", visible=False, elem_id="nada-upload-note")
            with gr.Row():
                source = gr.Textbox("photo", label="source text", elem_id="nada-source")
                target = gr.Textbox("sketch", label="target text", elem_id="nada-target")
            guide = gr.Radio([("text", TEXT), ("style images", IMAGES)], value=TEXT, label="target from")
            style = gr.File(label="style images", file_count="multiple", visible=False, elem_id="nada-style")
            clip = gr.Dropdown(CLIP_CHOICES, value=[], multiselect=True, allow_custom_value=True,
                               label="CLIP models (empty: shapes + shapes-fine on the shapes world, "
                                     "ViT-B-32 + ViT-B-16 otherwise)", elem_id="nada-clip")
            adapter = gr.Radio([("whole generator (full fine-tuning)", "full"),
                                ("StyleSpace domain (a few KB)", "stylespace"),
                                ("modulation domain (a few KB)", "modulation")], value="full",
                               label="what learns", elem_id="nada-adapter")
            with gr.Row():
                iters = gr.Slider(10, 2000, value=300, step=10, label="iterations", elem_id="nada-iters")
                every = gr.Slider(1, 200, value=20, step=1, label="preview every N iterations",
                                  elem_id="nada-every")
            with gr.Accordion("advanced", open=False):
                preset = gr.Dropdown(list(PRESETS), value="default", label="preset")
                layers = gr.Textbox("", label="layers (names, globs, all / shape / texture; empty: default)")
                k = gr.Textbox("", label="style indices per step, k (N, N/M or all; empty: default)")
                with gr.Row():
                    batch = gr.Number(0, precision=0, label="batch (0: default)")
                    lr = gr.Number(0.0, label="learning rate (0: default)")
                    seed = gr.Number(0, precision=0, label="seed")
                clip_weights = gr.Textbox("", label="CLIP weights, one per model (empty: all 1)")
                with gr.Row():
                    l_dir = gr.Number(1.0, label="λ direction")
                    l_glob = gr.Number(0.0, label="λ global")
                    l_norm = gr.Number(0.0, label="λ norm")
                    l_man = gr.Number(0.0, label="λ manifold")
                    l_patch = gr.Number(0.0, label="λ patch")
                evaluate = gr.Checkbox(True, label="evaluate with the shapes oracle at the end")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="nada-start")
                stop = gr.Button("Stop", variant="stop", elem_id="nada-stop")
            with gr.Accordion("resume a stopped run", open=False):
                resume_run = gr.Dropdown([], allow_custom_value=True, label="stopped run", elem_id="nada-resume-run")
                resume_iters = gr.Number(0, precision=0, label="iterations in total (0: the run's)")
                with gr.Row():
                    resume_refresh = gr.Button("Refresh", size="sm")
                    resume = gr.Button("Resume", elem_id="nada-resume")
        with gr.Column(scale=1, min_width=320):
            status = gr.HTML("", elem_id="nada-status")
            preview = gr.Image(label="frozen (top) vs adapted (bottom)", interactive=False, type="numpy",
                               elem_id="nada-preview", height=300)
            with gr.Row():
                dl_gen = gr.DownloadButton("generator (.safetensors)", visible=False, size="sm",
                                           elem_id="nada-dl-generator")
                dl_ros = gr.DownloadButton("rosinality (.pt)", visible=False, size="sm", elem_id="nada-dl-rosinality")
                dl_dom = gr.DownloadButton("domain (.safetensors)", visible=False, size="sm", elem_id="nada-dl-domain")
                dl_png = gr.DownloadButton("sample grid (.png)", visible=False, size="sm", elem_id="nada-dl-samples")
            results = gr.Markdown("", elem_id="nada-results")

    gen_kind.change(lambda kind: (gr.update(visible=kind == KNOWN), gr.update(visible=kind == UPLOAD)),
                    gen_kind, [known, upload], queue=False, api_name=False)
    guide.change(lambda g: (gr.update(visible=g == TEXT), gr.update(visible=g == IMAGES)),
                 guide, [target, style], queue=False, api_name=False)

    def check_upload(path):
        from .uploads import check_generator

        if not path:
            return gr.update(value="", visible=False)
        try:
            return gr.update(value=message_html(check_generator(path), "note"), visible=True)
        except NadaError as exc:
            return gr.update(value=message_html(str(exc)), visible=True)

    upload.change(check_upload, upload, upload_note, api_name=False)

    outputs = [status, preview, results, dl_gen, dl_ros, dl_dom, dl_png]
    hidden = [gr.update(visible=False, value=None)] * 4

    def stream(job):
        """Yield the page's outputs as the job changes, until it has ended."""
        shown = None
        for snap in job.watch():
            image = gr.skip()
            if snap.sample is not None and snap.sample != shown:
                shown = snap.sample
                grid = read_png(snap.sample)  # two rows (frozen, adapted) with 2 px gaps
                image = None if grid is None else for_display(grid, tile=(grid.shape[0] - 2) // 2)
            if not snap.finished:
                yield status_html(snap, ctx), image, gr.skip(), *[gr.skip()] * 4
                continue
            text, downloads = "", hidden
            if snap.state in (DONE, STOPPED) and snap.tag:
                text = _result_markdown(ctx, snap)
            if snap.state == DONE and snap.tag:
                downloads = _downloads(ctx, snap.tag)
            yield status_html(snap, ctx), image, text, *downloads

    def on_start(generator, known_name, upload, source, guide, target, style_images, clip, adapter, iters,
                 preview_every, preset, layers, k, batch, lr, seed, clip_weights, lambda_direction,
                 lambda_global, lambda_norm, lambda_manifold, lambda_patch, evaluate,
                 request: gr.Request):
        values = dict(locals())
        values.pop("request")
        try:
            job, _ = submit_training(ctx, TrainForm.from_page(**values), owner=_session(request))
        except NadaError as exc:
            yield message_html(str(exc)), gr.skip(), "", *hidden
            return
        except Exception as exc:  # a bug: the page gets one line, the log the traceback
            log.exception("start failed")
            yield message_html(f"internal error: {type(exc).__name__}: {exc}"), gr.skip(), "", *hidden
            return
        yield status_html(job.snapshot(), ctx), None, "", *hidden
        yield from stream(job)

    def on_stop(request: gr.Request):
        jobs = ctx.jobs.jobs_of(_session(request))
        for job in jobs:
            job.stop()
        return gr.skip() if jobs else message_html("nothing of yours is running", "note")

    def on_resume(run_name, total, request: gr.Request):
        try:
            job = submit_resume(ctx, run_name, int(total or 0) or None, owner=_session(request))
        except NadaError as exc:
            yield message_html(str(exc)), gr.skip(), "", *hidden
            return
        yield status_html(job.snapshot(), ctx), gr.skip(), "", *hidden
        yield from stream(job)

    def resumable():
        runs = [r for r in ctx.list_runs() if r.resumable and not r.finished]
        return gr.update(choices=[(r.label, r.name) for r in runs], value=runs[0].name if runs else None)

    form = [gen_kind, known, upload, source, guide, target, style, clip, adapter, iters, every, preset, layers, k, batch,
            lr, seed, clip_weights, l_dir, l_glob, l_norm, l_man, l_patch, evaluate]
    # The handlers only watch their job (the runner trains), so any number may run at once.
    start.click(on_start, form, outputs, api_name="train", concurrency_limit=None)
    stop.click(on_stop, None, [status], api_name="stop", concurrency_limit=None)
    resume.click(on_resume, [resume_run, resume_iters], outputs, api_name="resume", concurrency_limit=None)
    resume_refresh.click(resumable, None, resume_run, api_name=False, concurrency_limit=None)


def _session(request) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def _result_markdown(ctx: AppContext, snap) -> str:
    from .compare import metrics_markdown

    result = snap.result
    lines = [f"**Run `{snap.tag}`**: {getattr(result, 'iterations', snap.step)} iterations "
             f"in {getattr(result, 'seconds', snap.elapsed):.1f} s of training."]
    if snap.state == DONE and getattr(result, "eval", None):
        lines += ["", "Shapes oracle, 256 fixed seeds (`nada eval`):", "", metrics_markdown(result.eval)]
    elif snap.state == DONE:
        lines.append("No oracle evaluation (only text targets on the shapes world are evaluated).")
    return "\n".join(lines)


def _downloads(ctx: AppContext, run_name: str):
    out = []
    for key in ("generator", "rosinality", "domain", "samples"):
        try:
            out.append(gr.update(value=str(ctx.export(run_name, key)), visible=True))
        except NadaError:
            out.append(gr.update(visible=False, value=None))
    return out
