"""``nada invert`` end to end on the shapes generator (a few steps), and every bad input: one line
on stderr, exit status 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nada.cli import main
from nada.invert.images import read_image
from nada.shapes import renderer as R


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    d = tmp_path_factory.mktemp("renders")
    fs = [f.replace(rotation=0.0) for f in R.random_factors(np.random.default_rng(3), 2, style="photo")]
    paths = []
    for i, im in enumerate(R.render_batch(fs, [0, 1])):
        p = d / f"shape{i}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths


def invert(argv: list[str]) -> int:
    return main(["invert", *argv])


def _one_line_error(capsys, argv, match):
    assert invert(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert match in err, err
    return err


def test_invert_writes_latents_reconstructions_and_metrics(renders, tmp_path, capsys):
    from nada.checkpoints import load_generator
    from nada.hub import resolve_generator
    from nada.invert.edit import load_inversion

    out = tmp_path / "inv"
    assert invert([*map(str, renders), str(renders[0]), "--steps", "4", "--out", str(out), "--quiet"]) == 0
    assert invert([str(renders[0]), "--no-wplus", "--steps", "2", "--out", str(tmp_path / "w"), "--quiet"]) == 0
    assert json.loads((tmp_path / "w" / "metrics.json").read_text())["space"] == "W"
    assert "inverted 3 image(s)" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["latents.safetensors", "metrics.json", "shape0_2_input.png", "shape0_2_recon.png",
                     "shape0_input.png", "shape0_recon.png", "shape1_input.png", "shape1_recon.png"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["loss"] == "pixel-multiscale" and m["space"] == "W+" and m["steps"] == 4
    assert [i["name"] for i in m["images"]] == ["shape0", "shape1", "shape0_2"]
    assert all(i["pixel_mse"] > 0 and i["psnr_db"] > 0 for i in m["images"])
    assert all(i["perceptual"] is None and set(i["terms"]) == {"pixel-multiscale"} for i in m["images"])
    G = load_generator(resolve_generator("shapes")).generator
    ws, noise = load_inversion(out / "latents.safetensors", G.num_ws, G.w_dim)
    assert ws.shape == (3, G.num_ws, G.w_dim) and set(noise) == set(G.synthesis.noise_shapes())
    with torch.no_grad():  # the latents file reproduces the reconstruction PNG
        img = G.synthesis(ws[:1], noise={k: v[:1] for k, v in noise.items()})
    png = np.asarray(Image.open(out / "shape0_recon.png"))
    assert np.abs(R.to_uint8(img)[0].astype(int) - png.astype(int)).max() <= 1
    assert np.array_equal(np.asarray(Image.open(out / "shape0_input.png")), np.asarray(Image.open(renders[0])))


def test_bad_images_are_one_line_each_before_work(tmp_path, capsys, renders):
    out = tmp_path / "never"
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(renders[0].read_bytes()[:300])
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiny)
    _one_line_error(capsys, [str(tmp_path / "missing.png"), "--out", str(out)], "does not exist")
    _one_line_error(capsys, [str(text), "--out", str(out)], "is not an image")
    _one_line_error(capsys, [str(trunc), "--out", str(out)], "corrupt or truncated")
    _one_line_error(capsys, [str(tiny), "--out", str(out)], "too small")
    err = _one_line_error(capsys, [str(text), str(tiny), str(renders[0]), "--out", str(out)], "2 images cannot be used")
    assert "notes.png" in err and "tiny.png" in err
    _one_line_error(capsys, [str(tmp_path), "--out", str(out)], "is not a file")
    assert not out.exists()


def test_bad_options_are_one_line(tmp_path, capsys, renders):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    _one_line_error(capsys, [str(renders[0]), "--out", str(afile)], "is a file")
    _one_line_error(capsys, [str(renders[0]), "--out", str(tmp_path / "o"), "--steps", "0"], "steps=0")
    _one_line_error(capsys, [str(renders[0]), "--out", str(tmp_path / "o"), "--clip-weight", "1"], "--clip")
    _one_line_error(capsys, [str(renders[0]), "--out", str(tmp_path / "o"), "--encoder", str(tmp_path / "e.pt"),
                             "--steps", "1"], "encoder")
    _one_line_error(capsys, [str(renders[0]), "--out", str(tmp_path / "o"), "--generator", str(tmp_path / "g")],
                    "is not a file")
    assert not (tmp_path / "o").exists()


def test_greyscale_rgba_and_palette_are_converted_with_a_note(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((32, 32), 100, np.uint8), "L").save(grey)
    im = read_image(grey)
    assert im.pixels.shape == (32, 32, 3) and (im.pixels == 100).all()
    assert "greyscale" in im.notes[0]
    rgba = tmp_path / "rgba.png"
    a = np.zeros((32, 32, 4), np.uint8)
    a[..., 0] = 255
    a[:16, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(a, "RGBA").save(rgba)
    im = read_image(rgba)
    assert (im.pixels[:16] == [255, 0, 0]).all() and (im.pixels[16:] == 255).all()
    assert "composited on white" in im.notes[0]
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(cmyk)
    assert "converted to RGB" in read_image(cmyk).notes[0]


def test_clip_term_is_recorded_in_the_metrics(renders, tmp_path):
    out = tmp_path / "clip"
    assert invert([str(renders[0]), "--clip", "shapes", "--clip-weight", "0.5", "--steps", "2", "--out", str(out),
                   "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["loss"] == "pixel-multiscale + 0.5·clip[shapes]"
    terms = m["images"][0]["terms"]
    assert set(terms) == {"pixel-multiscale", "clip[shapes]"} and 0 <= terms["clip[shapes]"] <= 2
    assert abs(m["images"][0]["loss"] - terms["pixel-multiscale"] - 0.5 * terms["clip[shapes]"]) < 1e-5


def test_an_encoder_for_another_generator_is_one_line(renders, tmp_path, capsys):
    from nada.invert.e4e import E4E, Encoder4Editing, state_dict_for_checkpoint

    enc = E4E(Encoder4Editing(num_ws=10, w_dim=16, width=0.125).eval(), torch.zeros(16), {"stylegan_size": 64})
    torch.save(state_dict_for_checkpoint(enc), tmp_path / "e.pt")
    _one_line_error(capsys, [str(renders[0]), "--encoder", str(tmp_path / "e.pt"), "--out", str(tmp_path / "o")],
                    "the generator reads [10, 128]")
    assert not (tmp_path / "o").exists()
