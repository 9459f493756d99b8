"""The Gradio front end: it builds, reports bad input as messages, and shows frozen vs adapted."""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import app  # noqa: E402

from nada.checkpoints import save_generator  # noqa: E402
from nada.networks import Generator, GeneratorConfig  # noqa: E402


def test_app_builds():
    import gradio as gr

    assert isinstance(app.build_app(), gr.Blocks)


def test_bad_input_is_a_message_not_a_traceback():
    text, image = app.train_job("photo", "  ", "", "", 10, 2)
    assert "error" in text and image is None
    grid, text = app.side_by_side("", "0-3", 0.7)
    assert grid is None and "error" in text


def test_side_by_side_shows_frozen_over_adapted(tmp_path):
    torch.manual_seed(0)
    cfg = GeneratorConfig.preset("shapes-64")
    frozen, adapted = Generator(cfg), Generator(cfg)
    save_generator(frozen, tmp_path / "frozen.safetensors")
    run = tmp_path / "run"
    run.mkdir()
    save_generator(adapted, run / "generator.safetensors")
    (run / "config.json").write_text(json.dumps({"generator": str(tmp_path / "frozen.safetensors")}))
    grid, caption = app.side_by_side(str(run), "0-2", 0.7)
    assert grid.shape == (128, 192, 3) and grid.dtype == np.uint8
    assert not np.array_equal(grid[:64], grid[64:])  # different weights, different rows
    assert "frozen" in caption
