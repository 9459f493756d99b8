"""CLI: nada convert / generate / info PATH on small generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nada.checkpoints import load_generator, save_generator
from nada.cli import main
from nada.networks import Generator, GeneratorConfig
from nada.networks.sampling import generate_images, parse_seeds, z_from_seeds


@pytest.fixture()
def gen_file(tmp_path):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2,
                                  channel_base=128, channel_max=16)).eval()
    return G, save_generator(G, tmp_path / "g.safetensors", {"note": "cli"})


def test_convert_round_trip(tmp_path, gen_file, capsys):
    G, path = gen_file
    assert main(["convert", str(path), str(tmp_path / "r.pt")]) == 0
    assert main(["convert", str(tmp_path / "r.pt"), str(tmp_path / "back.safetensors")]) == 0
    back = load_generator(tmp_path / "back.safetensors")
    assert back.metadata["converted_from"]["format"] == "rosinality"
    for k, v in G.state_dict().items():
        assert torch.equal(v, back.generator.state_dict()[k])
    assert main(["info", str(tmp_path / "r.pt")]) == 0
    assert "rosinality" in capsys.readouterr().out


def test_generate_grid_and_individual(tmp_path, gen_file):
    G, path = gen_file
    grid = tmp_path / "grid.png"
    assert main(["generate", "--generator", str(path), "--seeds", "0-5", "--trunc", "0.7",
                 "--out", str(grid), "--cols", "3"]) == 0
    im = np.asarray(Image.open(grid))
    assert im.shape == (32, 48, 3)
    expect = generate_images(G, [0, 1, 2, 3, 4, 5], truncation_psi=0.7)
    assert np.array_equal(im[:16, 16:32], expect[1]) and np.array_equal(im[16:, 32:], expect[5])
    # an existing grid is replaced
    assert main(["generate", "--generator", str(path), "--seeds", "0-1", "--out", str(grid)]) == 0
    assert np.asarray(Image.open(grid)).shape == (16, 32, 3)
    out = tmp_path / "imgs"
    assert main(["generate", "--generator", str(path), "--seeds", "3,7", "--individual", "--out", str(out),
                 "--noise-mode", "random"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed0003.png", "seed0007.png"]
    # random noise is seeded per seed: same image whatever the batch it is in
    again = generate_images(G, [7], noise_mode="random")
    assert np.array_equal(np.asarray(Image.open(out / "seed0007.png")), again[0])


def test_generate_errors(tmp_path, gen_file, capsys, monkeypatch):
    _, path = gen_file
    assert main(["generate", "--generator", str(path), "--seeds", "5-2", "--out", str(tmp_path / "x.png")]) == 2
    assert "bad seed list" in capsys.readouterr().err
    monkeypatch.setenv("NADA_PRETRAINED", str(tmp_path / "none"))
    assert main(["generate", "--out", str(tmp_path / "x.png")]) == 2
    assert "shapes generator" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    assert main(["convert", str(tmp_path / "missing.pt"), str(tmp_path / "o.safetensors")]) == 2


def test_seed_helpers():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    z = z_from_seeds([42], 5)
    assert torch.equal(z[0], torch.from_numpy(np.random.RandomState(42).randn(5)).float())


def test_run_directory_is_accepted_wherever_a_generator_is(tmp_path, gen_file, capsys):
    """`nada generate` and `nada info` take a `nada train` run directory (its adapted generator),
    as `nada eval` and `nada train --generator` do."""
    G, path = gen_file
    run = tmp_path / "run"
    run.mkdir()
    (run / "generator.safetensors").write_bytes(path.read_bytes())
    assert main(["generate", "--generator", str(run), "--seeds", "0-1", "--out", str(tmp_path / "g.png")]) == 0
    im = np.asarray(Image.open(tmp_path / "g.png"))
    assert np.array_equal(im[:, :16], generate_images(G, [0])[0])
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert "generator.safetensors" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["generate", "--generator", str(empty), "--out", str(tmp_path / "x.png")]) == 2
    assert "run directory" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
