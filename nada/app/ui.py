"""Assemble the web demo from its tabs (nada.app.tabs) and launch it."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from .context import AppContext

log = logging.getLogger(__name__)

INTRO = ("# nada: text-driven domain adaptation of StyleGAN2 (StyleGAN-NADA)\n"
         "Type a target domain and train: CLIP steers a copy of the generator there while a frozen copy "
         "keeps the source. With nothing downloaded everything runs on the embedded shapes world "
         "(offline, on a CPU). **Train** adapts a generator and hands over the result; **Explore** "
         "compares the runs of the runs folder, the command line's included; **Mapper** learns a text-driven "
         "edit inside a domain (a latent mapper) and applies it; **Edit** inverts an uploaded image and shows "
         "it through adapted runs, and makes a morph video.")
CSS = ".nada-progress-text{font-variant-numeric:tabular-nums}"


def tab_builders():
    """(title, builder) for every tab whose module exists, in page order."""
    from .tabs import TABS

    found = []
    for title, module, function in TABS:
        name = f"{__package__}.{module}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a tab not built yet
            if exc.name != name:
                raise
            continue
        found.append((title, getattr(mod, function)))
    return found


def build_app(ctx: AppContext | None = None, runs_dir: str | Path = "runs"):
    """The Gradio Blocks of the demo over ``ctx`` (default: a new context on ``runs_dir``)."""
    import gradio as gr

    ctx = ctx or AppContext(Path(runs_dir))
    with gr.Blocks(title="nada: StyleGAN-NADA") as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            for title, builder in tab_builders():
                with gr.Tab(title, id=title.lower(), elem_id=f"nada-tab-{title.lower()}") as tab:
                    on_select = builder(ctx)
                if on_select:
                    fn, inputs, outputs = on_select
                    tab.select(fn, inputs, outputs, api_name=False, concurrency_limit=None)
                    demo.load(fn, inputs, outputs, api_name=False, concurrency_limit=None)
    demo.nada_context = ctx
    return demo


def launch(ctx: AppContext, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True, quiet: bool = False):
    """Serve the demo on ``host:port`` (127.0.0.1 by default; a public link only with ``share``).
    With ``block=False`` it returns at once (tests); ``demo.close()`` stops it."""
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=quiet,
                show_error=False, css=CSS, footer_links=["api"], max_file_size="2gb")
    return demo
