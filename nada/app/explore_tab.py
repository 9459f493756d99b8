"""The Explore tab: any run of the runs folder (the CLI's too), frozen vs adapted for chosen
seeds, truncation, a domain blend between the frozen and the adapted weights, several runs side
by side, the oracle's evaluation (computed on demand), and the picture as a PNG download."""

from __future__ import annotations

import logging
import threading

import gradio as gr

from ..errors import NadaError
from .context import AppContext
from .training import for_display, message_html

log = logging.getLogger(__name__)

_MAX_RUNS = 6
_MAX_DOMAINS = 4  # sliders of the domain mixer


def explore(ctx: AppContext, viewer, names: list[str], seeds: str, truncation: float, alpha: float):
    """(grid uint8 [H, W, 3], caption markdown, PNG path in the scratch folder) for ``names``."""
    from ..adapt.rundir import save_png
    from ..errors import ConfigError
    from ..networks.sampling import parse_seeds
    from .compare import compose

    names = [n for n in (names or []) if n]
    if not names:
        raise ConfigError("no run chosen", "pick one or more runs (train one in the Train tab first)")
    if len(names) > _MAX_RUNS:
        raise ConfigError(f"{len(names)} runs chosen; at most {_MAX_RUNS} side by side", "deselect a few")
    seed_list = parse_seeds(seeds)
    views = [viewer.render(n, ctx.run_dir(n), seed_list, float(truncation), float(alpha)) for n in names]
    grid = compose(views)
    rows, last = [], None
    for v in views:
        if v.source_spec != last:
            rows.append(f"frozen ({'shapes world' if v.source_spec == 'shapes' else 'source generator'})")
            last = v.source_spec
        rows.append(f"`{v.name}` at domain {float(alpha):.2f}")
    caption = "Rows, top to bottom: " + "; ".join(rows) + f". Seeds {seeds}, truncation ψ {float(truncation):.2f}."
    png = save_png(ctx.scratch_file(".png"), grid)
    return grid, caption, png


def eval_markdown(ctx: AppContext, names: list[str], compute: bool, device) -> str:
    """Each run's oracle table; missing ones computed (and saved as eval.json) when ``compute``."""
    import json

    from ..adapt.rundir import run_evaluator
    from .compare import evaluate_run, metrics_markdown

    parts = []
    for name in names or []:
        try:
            run = ctx.run_dir(name)
            if compute or (run / "eval.json").is_file():
                table = metrics_markdown(evaluate_run(run, device))
            else:
                cfg = json.loads((run / "config.json").read_text())
                shapes = run_evaluator(cfg) == "shapes" and cfg.get("target")
                table = ("_Not evaluated yet: **Evaluate** runs the shapes oracle (256 seeds, a few seconds)._"
                         if shapes else "_No oracle for this run (it needs a text target on the shapes world)._")
        except NadaError as exc:
            table = f"_{exc}_"
        parts.append(f"**{name}**\n\n{table}")
    return "\n\n".join(parts)


def build_explore_tab(ctx: AppContext):
    """Build the tab; returns (refresh, [runs dropdown]) for the app to run when it is selected."""
    from ..device import resolve_device
    from .compare import Viewer

    device = resolve_device(ctx.device)
    viewer = Viewer(device)
    eval_lock = threading.Lock()  # one oracle evaluation at a time

    with gr.Row():
        runs = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="runs (choose several to compare side by side)",
                           scale=4, elem_id="nada-runs")
        refresh = gr.Button("Refresh", scale=0, size="sm", elem_id="nada-refresh")
    with gr.Row():
        seeds = gr.Textbox("0-7", label="seeds (e.g. 0-7 or 3,14,15)", elem_id="nada-seeds")
        trunc = gr.Slider(0, 1, value=0.7, step=0.05, label="truncation ψ", elem_id="nada-trunc")
        alpha = gr.Slider(0, 1, value=1.0, step=0.05, label="domain: 0 frozen … 1 adapted", elem_id="nada-alpha")
    with gr.Row():
        show = gr.Button("Show", variant="primary", elem_id="nada-show")
        evaluate = gr.Button("Evaluate", elem_id="nada-evaluate")
        download = gr.DownloadButton("PNG", visible=False, elem_id="nada-dl-png")
    note = gr.HTML("", elem_id="nada-explore-note")
    grid = gr.Image(label="frozen vs adapted", interactive=False, type="numpy", elem_id="nada-grid", height=360)
    caption = gr.Markdown("", elem_id="nada-caption")
    tables = gr.Markdown("", elem_id="nada-eval")
    with gr.Accordion("mix domains (runs trained with a StyleSpace or modulation adapter)", open=False):
        mix_runs = gr.Dropdown([], value=[], multiselect=True, max_choices=_MAX_DOMAINS, allow_custom_value=True,
                               label=f"domains (up to {_MAX_DOMAINS}, of one base generator)", elem_id="nada-mix-runs")
        with gr.Row():
            sliders = [gr.Slider(-1, 2, value=1.0, step=0.05, label=f"domain {i + 1}", visible=False,
                                 elem_id=f"nada-mix-w{i}") for i in range(_MAX_DOMAINS)]
        mix = gr.Button("Mix", elem_id="nada-mix")
        mix_note = gr.HTML("", elem_id="nada-mix-note")
        mix_grid = gr.Image(label="base (top) vs mixed domains (bottom)", interactive=False, type="numpy",
                            elem_id="nada-mix-grid", height=240)
        mix_caption = gr.Markdown("", elem_id="nada-mix-caption")

    def on_show(names, seed_text, psi, blend):
        try:
            image, text, png = explore(ctx, viewer, names, seed_text, psi, blend)
        except NadaError as exc:
            return message_html(str(exc)), None, "", "", gr.update(visible=False, value=None)
        except Exception as exc:
            log.exception("explore failed")
            return (message_html(f"internal error: {type(exc).__name__}: {exc}"), None, "", "",
                    gr.update(visible=False, value=None))
        return ("", for_display(image, tile=viewer.last_tile), text, eval_markdown(ctx, names, False, device),
                gr.update(value=str(png), visible=True))

    def on_evaluate(names):
        if not names:
            return message_html("no run chosen", "note"), gr.skip()
        with eval_lock:
            return "", eval_markdown(ctx, names, True, device)

    def on_refresh(current, current_mix=None):
        from .compare import domain_runs

        infos = ctx.list_runs(finished_only=True)
        names = [r.name for r in infos]
        keep = [n for n in (current or []) if n in names] or names[:1]
        domains = domain_runs(ctx)
        dnames = [r.name for r in domains]
        keep_mix = [n for n in (current_mix or []) if n in dnames]
        return (gr.update(choices=[(r.label, r.name) for r in infos], value=keep),
                gr.update(choices=[(r.label, r.name) for r in domains], value=keep_mix))

    def on_mix_choice(names):
        names = [n for n in (names or []) if n][:_MAX_DOMAINS]
        return [gr.update(visible=i < len(names), label=f"weight of {names[i]}" if i < len(names) else f"domain {i + 1}")
                for i in range(_MAX_DOMAINS)]

    def on_mix(names, seed_text, psi, w0, w1, w2, w3):  # one weight per slider (_MAX_DOMAINS)
        from ..errors import ConfigError
        from ..networks.sampling import parse_seeds
        from .compare import mix_view

        try:
            names = [n for n in (names or []) if n]
            if len(names) > _MAX_DOMAINS:
                raise ConfigError(f"{len(names)} domains chosen; the mixer takes {_MAX_DOMAINS}", "deselect a few")
            weights = [w0, w1, w2, w3][:len(names)]
            image, text = mix_view(ctx, viewer, names, [float(w) for w in weights],
                                   parse_seeds(seed_text), float(psi))
        except NadaError as exc:
            return message_html(str(exc)), None, ""
        except Exception as exc:
            log.exception("mix failed")
            return message_html(f"internal error: {type(exc).__name__}: {exc}"), None, ""
        return "", for_display(image, tile=viewer.last_tile), text

    view_inputs, view_outputs = [runs, seeds, trunc, alpha], [note, grid, caption, tables, download]
    show.click(on_show, view_inputs, view_outputs, api_name="explore", concurrency_limit=4)
    runs.change(on_show, view_inputs, view_outputs, api_name=False, concurrency_limit=4)
    seeds.submit(on_show, view_inputs, view_outputs, api_name=False, concurrency_limit=4)
    trunc.release(on_show, view_inputs, view_outputs, api_name=False, concurrency_limit=4)
    alpha.release(on_show, view_inputs, view_outputs, api_name=False, concurrency_limit=4)
    evaluate.click(on_evaluate, [runs], [note, tables], api_name="evaluate", concurrency_limit=4)
    refresh.click(on_refresh, [runs, mix_runs], [runs, mix_runs], api_name="runs", concurrency_limit=None)
    mix_runs.change(on_mix_choice, [mix_runs], sliders, api_name=False, queue=False)
    mix_inputs, mix_outputs = [mix_runs, seeds, trunc, *sliders], [mix_note, mix_grid, mix_caption]
    mix.click(on_mix, mix_inputs, mix_outputs, api_name="mix", concurrency_limit=4)
    for slider in sliders:
        slider.release(on_mix, mix_inputs, mix_outputs, api_name=False, concurrency_limit=4)
    return on_refresh, [runs, mix_runs], [runs, mix_runs]
