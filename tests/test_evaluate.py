"""nada eval: metrics from stub judges (exact formulas), the real oracle on renderer-backed
generators (frozen vs itself; photo -> sketch), target parsing, and the CLI on a run directory."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nada.errors import ConfigError
from nada.shapes.evaluate import evaluate, format_table, latents, parse_target, write_json
from nada.shapes.generator_factors import RenderedGenerator, factors_from_z
from nada.shapes.renderer import COLOURS, SHAPES, STYLES


class _ConstGenerator(torch.nn.Module):
    """Draws a constant image of value ``v`` (the stub oracle reads v back)."""

    def __init__(self, v: float, z_dim: int = 32):
        super().__init__()
        self.v, self.z_dim = v, z_dim

    def forward(self, z, truncation_psi=1, truncation_cutoff=None, noise_mode="const"):
        return torch.full((z.shape[0], 3, 8, 8), self.v)


class _StubOracle:
    """Frozen images (v > 0): shapes and colours cycle uniformly, style photo, centre (30, 30).
    Adapted images (v < 0): all style 'sketch', shape 0 for the first half else as frozen,
    colour 0, centre (33, 34), size +2."""

    def predict(self, img):
        n = img.shape[0]
        i = torch.arange(n)
        if img.mean() > 0:
            return {
                "style": torch.zeros(n, dtype=torch.long),
                "shape": i % 5,
                "colour": i % 6,
                "centre": torch.full((n, 2), 30.0),
                "size": torch.full((n,), 12.0),
            }
        shape = torch.where(i < n // 2, torch.zeros_like(i), i % 5)
        return {
            "style": torch.full((n,), STYLES.index("sketch")),
            "shape": shape,
            "colour": torch.zeros(n, dtype=torch.long),
            "centre": torch.tensor([[33.0, 34.0]]).repeat(n, 1),
            "size": torch.full((n,), 14.0),
        }


def _entropy(counts):
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c)


def test_metrics_formulas_with_stub_oracle():
    n = 60
    m = evaluate(_ConstGenerator(0.5), _ConstGenerator(-0.5), "sketch", seeds=range(n), oracle=_StubOracle())
    assert m["target_attainment"] == 1.0 and m["frozen_target_share"] == 0.0
    # first half collapsed to shape 0: matches frozen only where i % 5 == 0
    expected = (sum(1 for i in range(n // 2) if i % 5 == 0) + n // 2) / n
    assert m["shape_preserved"] == pytest.approx(expected)
    assert m["centre_shift_px"] == pytest.approx(5.0)
    assert m["size_change_px"] == pytest.approx(2.0) and m["size_abs_change_px"] == pytest.approx(2.0)
    adapted_counts = [n // 2 + sum(1 for i in range(n // 2, n) if i % 5 == 0)] + [
        sum(1 for i in range(n // 2, n) if i % 5 == k) for k in range(1, 5)
    ]
    assert m["diversity_shape"] == pytest.approx(_entropy(adapted_counts) / math.log(5))
    # sketch shows no colour: colour metrics are not reported
    assert m["colour_kept"] is None and m["diversity_colour"] is None
    assert m["diversity"] == m["diversity_shape"]
    # a colour-showing target style reports colour kept and colour diversity (all collapsed to 0)
    m2 = evaluate(_ConstGenerator(0.5), _ConstGenerator(-0.5), "neon", seeds=range(n), oracle=_StubOracle())
    assert m2["target_attainment"] == 0.0
    assert m2["colour_kept"] == pytest.approx(10 / 60) and m2["diversity_colour"] == 0.0
    table = format_table(m2)
    assert "target attainment" in table and "neon (style)" in table and "n/a" in table


def test_latents_seeded_per_seed():
    a, b = latents([3, 4], 16), latents([4], 16)
    assert torch.equal(a[1], b[0])
    assert not torch.equal(a[0], a[1])


def test_parse_target():
    assert parse_target("pixel_art").name == "pixel art"
    assert parse_target("a neon sign") .name == "neon"
    assert parse_target("Pencil Sketch").name == "sketch"
    t = parse_target("blue")
    assert (t.kind, t.index) == ("colour", COLOURS.index("blue"))
    with pytest.raises(ConfigError):
        parse_target("watercolour")


def test_errors():
    with pytest.raises(ConfigError):
        evaluate(_ConstGenerator(0.5), _ConstGenerator(-0.5), "sketch", seeds=[], oracle=_StubOracle())
    with pytest.raises(ConfigError):
        evaluate(_ConstGenerator(0.5), _ConstGenerator(-0.5, z_dim=16), "sketch", oracle=_StubOracle())


def test_rendered_generator_matches_factors():
    z = latents(range(8), 128)
    G = RenderedGenerator("photo")
    img = G(z)
    assert img.shape == (8, 3, 64, 64) and -1 <= img.min() and img.max() <= 1
    fs = factors_from_z(z)
    assert all(f.style == "photo" for f in fs)
    assert torch.equal(G(z), img)  # deterministic


def test_frozen_against_itself_with_real_oracle():
    frozen = RenderedGenerator("photo")
    m = evaluate(frozen, frozen, "sketch", seeds=range(48))
    assert m["target_attainment"] == 0.0 and m["frozen_target_share"] == 0.0
    assert m["shape_preserved"] == 1.0 and m["centre_shift_px"] == 0.0 and m["size_abs_change_px"] == 0.0
    assert m["diversity"] == pytest.approx(1.0)


def test_ideal_adaptation_with_real_oracle():
    m = evaluate(RenderedGenerator("photo"), RenderedGenerator("neon"), "neon", seeds=range(48))
    assert m["target_attainment"] >= 0.95
    assert m["shape_preserved"] >= 0.9 and m["colour_kept"] >= 0.85
    assert m["centre_shift_px"] < 2.0
    assert 0.8 <= m["diversity"] <= 1.2


def test_cli_on_run_dir(tmp_path, capsys):
    from nada.checkpoints import save_generator
    from nada.cli import main
    from nada.networks import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig.preset("shapes-64"))
    src = tmp_path / "source.safetensors"
    save_generator(G, src)
    run = tmp_path / "run"
    run.mkdir()
    save_generator(G, run / "generator.safetensors")
    (run / "config.json").write_text(json.dumps({"generator": str(src), "target": "sketch"}))
    assert main(["eval", str(run), "--seeds", "0-7", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "target attainment" in out
    m = json.loads((run / "eval.json").read_text())
    # identical generators: everything preserved
    assert m["n"] == 8 and m["shape_preserved"] == 1.0 and m["centre_shift_px"] == 0.0
    assert main(["eval", str(tmp_path / "missing")]) == 2


def test_write_json(tmp_path):
    p = write_json({"a": 1.0}, tmp_path / "x" / "eval.json")
    assert json.loads(p.read_text()) == {"a": 1.0}
