"""``nada edit``: the collage's columns are the latent rendered by each run (checked pixel for
pixel), labels, --individual, a mapper column, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nada.cli import main


def make_run(root, name: str, target: str, scale: float, source: str = "shapes", seed: int = 0):
    """A `nada train`-like run directory: the shapes generator with perturbed synthesis weights."""
    from nada.checkpoints import load_generator, save_generator
    from nada.hub import resolve_generator

    G = load_generator(resolve_generator("shapes")).generator
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.synthesis.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.abs().mean())
    run = root / name
    run.mkdir()
    save_generator(G, run / "generator.safetensors")
    (run / "config.json").write_text(json.dumps({"generator": source, "target": target}))
    return run, G


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from nada.checkpoints import load_generator
    from nada.hub import resolve_generator
    from nada.mapper.files import save_latents
    from nada.networks.sampling import z_from_seeds

    root = tmp_path_factory.mktemp("edit")
    G = load_generator(resolve_generator("shapes")).generator
    runs = [make_run(root, "a", "sketch", 0.05, seed=1), make_run(root, "b", "pixel art", 0.1, seed=2)]
    with torch.no_grad():
        ws = G.mapping(z_from_seeds([3, 4], G.z_dim), 0.7)
    save_latents(ws, root / "lat.safetensors")
    return root, G, runs, ws


def _cell(grid, row, col, cell=64, pad=2, top=18):
    y, x = top + row * (cell + pad), col * (cell + pad)
    return grid[y : y + cell, x : x + cell]


def test_collage_columns_are_each_runs_rendering(world, tmp_path):
    from nada.networks.sampling import to_uint8

    root, G, runs, ws = world
    out = tmp_path / "edit.png"
    assert main(["edit", "--latents", str(root / "lat.safetensors"), "--runs", str(runs[0][0]), str(runs[1][0]),
                 "--cell", "64", "--out", str(out)]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (18 + 2 * 64 + 2, 3 * 64 + 2 * 2, 3)  # label strip + 2 rows; reconstruction + 2 runs
    with torch.no_grad():
        for col, gen in enumerate([G, runs[0][1], runs[1][1]]):
            want = to_uint8(gen.synthesis(ws, noise_mode="const"))
            for row in range(2):
                assert np.abs(_cell(grid, row, col).astype(int) - want[row].astype(int)).max() <= 1, (row, col)
    assert not np.array_equal(_cell(grid, 0, 1), _cell(grid, 0, 2))
    assert (grid[:18] < 128).any()  # labels drawn
    assert main(["edit", "--latents", str(root / "lat.safetensors"), "--runs", str(runs[0][0]), "--cell", "32",
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (2 * 32 + 2, 18 + 2 * 32 + 2)  # replaced


def test_edit_from_an_image_individual_and_mapper(world, tmp_path):
    from nada.mapper.files import save_mapper
    from nada.mapper.network import LevelsMapper, MapperArch

    _, G, runs, _ = world
    img = np.asarray(Image.open(_render_png(tmp_path)))
    torch.manual_seed(0)
    mapper = LevelsMapper(MapperArch(G.img_resolution, G.w_dim, G.num_ws))
    save_mapper(mapper, tmp_path / "m.safetensors", {"target": "blue", "strength": 0.5, "generator": {"spec": "shapes"}})
    out = tmp_path / "cells"
    assert main(["edit", str(tmp_path / "in.png"), "--runs", str(runs[0][0]), "--steps", "3", "--individual",
                 "--mapper", str(tmp_path / "m.safetensors"), "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["in_blue-0-5.png", "in_input.png", "in_reconstruction.png", "in_sketch.png"]
    assert np.array_equal(np.asarray(Image.open(out / "in_input.png")), img)


def _render_png(tmp_path):
    from nada.shapes import renderer as R

    f = R.Factors("star", 250.0, 32.0, 30.0, 15.0)
    Image.fromarray(R.render(f, 0)).save(tmp_path / "in.png")
    return tmp_path / "in.png"


def test_bad_edit_inputs_are_one_line(world, tmp_path, capsys):
    root, _, runs, _ = world
    lat = str(root / "lat.safetensors")
    other, _ = make_run(tmp_path, "other", "neon", 0.01, source="ffhq-1024")
    small = tmp_path / "small"
    small.mkdir()
    from nada.checkpoints import save_generator
    from nada.networks import Generator, GeneratorConfig

    save_generator(Generator(GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64,
                                             channel_max=8)), small / "generator.safetensors")
    (small / "config.json").write_text(json.dumps({"generator": "shapes", "target": "tiny"}))
    cases = [
        (["--runs", str(runs[0][0])], "either IMAGE files or --latents"),
        ([str(_render_png(tmp_path)), "--latents", lat, "--runs", str(runs[0][0])], "either IMAGE files or --latents"),
        (["--latents", lat, "--runs", str(tmp_path / "nope")], "does not exist"),
        (["--latents", lat, "--runs", str(runs[0][0]), str(other)], "different generators"),
        (["--latents", lat, "--runs", str(small)], "another shape"),
        (["--latents", lat, "--runs", str(runs[0][0]), "--out", str(tmp_path)], "is a folder"),
        (["--latents", str(tmp_path / "x.safetensors"), "--runs", str(runs[0][0])], "does not exist"),
        (["--latents", lat, "--runs", str(runs[0][0]), "--cell", "4"], "--cell"),
        (["--latents", lat, "--runs", str(runs[0][0]), "--strength", "0.3"], "--strength needs --mapper"),
    ]
    for argv, match in cases:
        assert main(["edit", *argv, "--out", str(tmp_path / "e.png")] if "--out" not in argv else ["edit", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, (argv, err)
    assert not (tmp_path / "e.png").exists()
