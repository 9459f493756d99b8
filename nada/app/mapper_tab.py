"""The Mapper tab: learn a text-driven edit (a latent mapper) on the shapes world or on a run's
adapted generator, watch it train, download it; apply any finished mapper to seeds with a
strength slider, on its own generator or another of the same shape."""

from __future__ import annotations

import logging

import gradio as gr

from ..errors import NadaError
from .context import AppContext
from .jobs import DONE
from .mapping import (
    OWN,
    SHAPES_CHOICE,
    MapperForm,
    apply_view,
    mapper_runs,
    result_markdown,
    submit_mapper,
)
from .training import for_display, message_html, read_png, status_html

log = logging.getLogger(__name__)


def build_mapper_tab(ctx: AppContext):
    from ..mapper import MapperConfig

    defaults = MapperConfig(target="x")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("**Train a mapper**: one edit in W+ of a generator, w' = w + strength·M(w).")
            generator = gr.Dropdown([("embedded shapes world (photo)", SHAPES_CHOICE)], value=SHAPES_CHOICE,
                                    label="generator (the shapes world, or a finished run's adapted generator)",
                                    elem_id="nada-m-generator")
            target = gr.Textbox("blue", label="edit text", elem_id="nada-m-target")
            with gr.Row():
                steps = gr.Slider(10, 3000, value=defaults.steps, step=10, label="steps", elem_id="nada-m-steps")
                every = gr.Slider(1, 500, value=50, step=1, label="preview every N steps", elem_id="nada-m-every")
            with gr.Accordion("advanced", open=False):
                init = gr.Dropdown([("none", "")], value="", label="start from a finished mapper (fine-tune)")
                levels = gr.CheckboxGroup(["coarse", "medium", "fine"], value=list(defaults.levels),
                                          label="levels that edit")
                with gr.Row():
                    lr = gr.Number(defaults.lr, label="learning rate")
                    batch = gr.Number(defaults.batch, precision=0, label="batch")
                    seed = gr.Number(0, precision=0, label="seed")
                with gr.Row():
                    l_clip = gr.Number(defaults.lambda_clip, label="λ CLIP")
                    l_lat = gr.Number(defaults.lambda_latent, label="λ latent L2")
                    l_norm = gr.Number(defaults.lambda_norm, label="λ embedding norm")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="nada-m-start")
                stop = gr.Button("Stop", variant="stop", elem_id="nada-m-stop")
                refresh = gr.Button("Refresh lists", size="sm")
            status = gr.HTML("", elem_id="nada-m-status")
            preview = gr.Image(label="unedited (top) vs edited (bottom)", interactive=False, type="numpy",
                               elem_id="nada-m-preview", height=260)
            dl_mapper = gr.DownloadButton("mapper (.safetensors)", visible=False, size="sm", elem_id="nada-m-dl")
            results = gr.Markdown("", elem_id="nada-m-results")
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("**Apply a mapper** to seeds; the strength can differ from training.")
            mapper = gr.Dropdown([], label="mapper", allow_custom_value=True, elem_id="nada-m-mapper")  # names checked by ctx.run_dir
            on_gen = gr.Dropdown([("the generator it was trained on", OWN)], value=OWN,
                                 label="apply to (another generator of the same shape works too)")
            with gr.Row():
                seeds = gr.Textbox("0-7", label="seeds", elem_id="nada-m-seeds")
                strength = gr.Slider(0, 0.5, value=defaults.strength, step=0.01, label="strength",
                                     elem_id="nada-m-strength")
            apply = gr.Button("Apply", variant="primary", elem_id="nada-m-apply")
            note = gr.HTML("", elem_id="nada-m-note")
            grid = gr.Image(label="unedited (top) vs edited (bottom)", interactive=False, type="numpy",
                            elem_id="nada-m-grid", height=260)
            caption = gr.Markdown("", elem_id="nada-m-caption")

    def lists(current_gen=None, current_mapper=None):
        runs = [(r.label, r.name) for r in ctx.list_runs(finished_only=True)]
        mappers = [(r.label, r.name) for r in mapper_runs(ctx)]
        names = [n for _, n in mappers]
        gens = [("embedded shapes world (photo)", SHAPES_CHOICE)] + runs
        keep_gen = current_gen if current_gen in [n for _, n in gens] else SHAPES_CHOICE
        keep_map = current_mapper if current_mapper in names else (names[0] if names else None)
        return (gr.update(choices=gens, value=keep_gen), gr.update(choices=[("none", "")] + mappers),
                gr.update(choices=mappers, value=keep_map),
                gr.update(choices=[("the generator it was trained on", OWN)] + gens))

    def on_start(gen, text, n_steps, preview_every, init_name, lv, lr_v, batch_v, seed_v, lc, ll, ln,
                 request: gr.Request):
        form = MapperForm(generator=gen, target=text, steps=int(n_steps), preview_every=int(preview_every),
                          lr=float(lr_v or 0), batch=int(batch_v or 0), levels=list(lv or []),
                          lambda_clip=float(lc), lambda_latent=float(ll), lambda_norm=float(ln),
                          init=init_name or "", seed=int(seed_v or 0))
        hidden = gr.update(visible=False, value=None)
        try:
            job, _ = submit_mapper(ctx, form, owner=getattr(request, "session_hash", None))
        except NadaError as exc:
            yield message_html(str(exc)), gr.skip(), "", hidden
            return
        except Exception as exc:  # a bug: one line on the page, the traceback in the log
            log.exception("mapper start failed")
            yield message_html(f"internal error: {type(exc).__name__}: {exc}"), gr.skip(), "", hidden
            return
        shown = None
        for snap in job.watch():
            image = gr.skip()
            if snap.sample is not None and snap.sample != shown:
                shown = snap.sample
                png = read_png(snap.sample)
                image = None if png is None else for_display(png, tile=(png.shape[0] - 2) // 2)
            if not snap.finished:
                yield status_html(snap, ctx), image, gr.skip(), gr.skip()
                continue
            done = snap.state == DONE and snap.tag
            download = hidden
            if done:
                try:
                    download = gr.update(value=str(ctx.export(snap.tag, "mapper")), visible=True)
                except NadaError:
                    pass
            yield status_html(snap, ctx), image, result_markdown(snap) if done else "", download

    def on_stop(request: gr.Request):
        jobs = ctx.jobs.jobs_of(getattr(request, "session_hash", None))
        for job in jobs:
            job.stop()
        return gr.skip() if jobs else message_html("nothing of yours is running", "note")

    def on_apply(name, gen, seed_text, s):
        try:
            image, text, tile = apply_view(ctx, name, gen, seed_text, s)
        except NadaError as exc:
            return message_html(str(exc)), None, ""
        except Exception as exc:
            log.exception("mapper apply failed")
            return message_html(f"internal error: {type(exc).__name__}: {exc}"), None, ""
        return "", for_display(image, tile=tile), text

    form = [generator, target, steps, every, init, levels, lr, batch, seed, l_clip, l_lat, l_norm]
    start.click(on_start, form, [status, preview, results, dl_mapper], api_name="mapper_train",
                concurrency_limit=None)
    stop.click(on_stop, None, [status], api_name="mapper_stop", concurrency_limit=None)
    apply_inputs = [mapper, on_gen, seeds, strength]
    apply.click(on_apply, apply_inputs, [note, grid, caption], api_name="mapper_apply", concurrency_limit=4)
    strength.release(on_apply, apply_inputs, [note, grid, caption], api_name=False, concurrency_limit=4)
    list_outputs = [generator, init, mapper, on_gen]
    refresh.click(lists, [generator, mapper], list_outputs, api_name="mapper_lists", concurrency_limit=None)
    return lists, [generator, mapper], list_outputs
