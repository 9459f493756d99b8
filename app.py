"""nada in a browser: adapt a generator with two words, then look at the result.

    python app.py [--host 127.0.0.1] [--port 7860]

Three tabs, each a thin layer over the library (``nada.adapt.train``, ``nada.networks.sampling``,
``nada.shapes.evaluate``): Train (source/target text, generator, CLIP models, iterations),
Generate (frozen vs adapted side by side for chosen seeds) and Evaluate (the shapes oracle's
table for a run). With no generator or CLIP given, everything runs on the embedded shapes world.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nada.errors import NadaError

RUNS = Path("runs") / "app"


def _run_dirs() -> list[str]:
    if not RUNS.exists():
        return []
    return sorted((str(p) for p in RUNS.iterdir() if (p / "config.json").exists()), reverse=True)


def train_job(source, target, generator, clip, iters, k, progress=None):
    """Run ``nada train`` with the app's options; returns (status markdown, last sample grid)."""
    from nada.adapt import TrainConfig, train

    if not target or not target.strip():
        return "**error:** type a target text, e.g. `sketch`", None
    out = RUNS / time.strftime("%Y%m%d-%H%M%S")
    try:
        cfg = TrainConfig(
            source=source.strip() or "photo",
            target=target.strip(),
            generator=generator.strip() or "shapes",
            clip=tuple(s.strip() for s in clip.split(",") if s.strip()),
            iters=int(iters),
            out=str(out),
            **({"auto_layer_k": int(k)} if int(k) > 0 else {}),  # 0: nada's default layer choice
        )
        result = train(cfg)
    except NadaError as exc:
        return f"**error:** {exc}", None
    samples = sorted((result.run_dir / "samples").glob("*.png"))
    text = f"Run `{result.run_dir}`: {result.iterations} iterations in {result.seconds:.0f} s."
    if result.eval_table:
        text += "\n\n```\n" + result.eval_table + "\n```"
    return text, str(samples[-1]) if samples else None


def side_by_side(run_dir, seeds, truncation):
    """Frozen and adapted images of a run for the same seeds (top row frozen, bottom adapted)."""
    from nada.checkpoints import load_generator
    from nada.hub import resolve_generator
    from nada.networks.sampling import generate_images, image_grid, parse_seeds

    try:
        if not run_dir:
            raise NadaError("choose a run directory", "train one in the Train tab first")
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
        seeds_list = parse_seeds(seeds)
        frozen = load_generator(resolve_generator(cfg.get("generator", "shapes"))).generator
        adapted = load_generator(Path(run_dir) / "generator.safetensors").generator
    except (NadaError, OSError, ValueError) as exc:
        return None, f"**error:** {exc}"
    a = generate_images(frozen, seeds_list, float(truncation))
    b = generate_images(adapted, seeds_list, float(truncation))
    grid = np.concatenate([image_grid(a, cols=len(seeds_list)), image_grid(b, cols=len(seeds_list))], axis=0)
    return grid, f"top: frozen ({cfg.get('generator', 'shapes')}), bottom: adapted ({run_dir})"


def evaluate_run(run_dir):
    """The shapes oracle's table for a run (reads its eval.json when the trainer wrote one)."""
    path = Path(run_dir or "") / "eval.json"
    if not run_dir or not path.exists():
        return "No eval.json in this run (only shapes-world runs are evaluated; `nada eval RUN_DIR` makes one)."
    from nada.shapes.evaluate import format_table

    return "```\n" + format_table(json.loads(path.read_text())) + "\n```"


def build_app():
    import gradio as gr

    with gr.Blocks(title="nada: StyleGAN-NADA") as demo:
        gr.Markdown("# nada: text-driven domain adaptation of StyleGAN2\n"
                    "Leave generator and CLIP empty to use the embedded shapes world (offline, CPU).")
        with gr.Tab("Train"):
            with gr.Row():
                source = gr.Textbox(value="photo", label="source text")
                target = gr.Textbox(value="sketch", label="target text")
            with gr.Row():
                generator = gr.Textbox(value="", label="generator (path, known name, URL; empty = shapes)")
                clip = gr.Textbox(value="", label="CLIP models, comma-separated (empty = default)")
            with gr.Row():
                iters = gr.Slider(10, 1000, value=300, step=10, label="iterations")
                k = gr.Slider(0, 18, value=0, step=1, label="layers unfrozen per step (k; 0 = default)")
            go = gr.Button("Train", variant="primary")
            status = gr.Markdown()
            sample = gr.Image(label="last frozen-vs-adapted sample grid")
            go.click(train_job, [source, target, generator, clip, iters, k], [status, sample])
        with gr.Tab("Generate"):
            run = gr.Dropdown(choices=_run_dirs(), label="run directory", allow_custom_value=True)
            seeds = gr.Textbox(value="0-7", label="seeds")
            trunc = gr.Slider(0, 1, value=0.7, step=0.05, label="truncation psi")
            show = gr.Button("Generate")
            grid = gr.Image(label="frozen (top) vs adapted (bottom)")
            caption = gr.Markdown()
            show.click(side_by_side, [run, seeds, trunc], [grid, caption])
        with gr.Tab("Evaluate"):
            run_e = gr.Dropdown(choices=_run_dirs(), label="run directory", allow_custom_value=True)
            table = gr.Markdown()
            gr.Button("Show evaluation").click(evaluate_run, [run_e], [table])
    return demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args()
    build_app().launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
