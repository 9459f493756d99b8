"""The shipped shapes oracle: loads, judges fresh renders well (smaller-sample thresholds),
handles other input sizes; save/load round trip; a missing model is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nada.errors import ModelNotFoundError
from nada.shapes.oracle import Oracle, OracleConfig, OracleNet, load_oracle, save_oracle
from nada.shapes.renderer import SHAPES, STYLES, STYLES_WITH_COLOUR, random_factors, render_batch, to_tensor


@pytest.fixture(scope="module")
def oracle():
    return load_oracle("cpu")


@pytest.mark.parametrize("style", STYLES)
def test_thresholds_on_fresh_renders(oracle, style):
    rng = np.random.default_rng(987_654 + STYLES.index(style))  # never a training seed (those are [0, step])
    fs = random_factors(rng, 150, style=style)
    x = to_tensor(render_batch(fs, rng.integers(0, 2**31, size=150).tolist()))
    p = oracle.predict(x)
    assert (p["style"] == STYLES.index(style)).float().mean() >= 0.97
    assert (p["shape"] == torch.tensor([SHAPES.index(f.shape) for f in fs])).float().mean() >= 0.95
    if style in STYLES_WITH_COLOUR:
        assert (p["colour"] == torch.tensor([f.colour for f in fs])).float().mean() >= 0.9
    centre = torch.tensor([[f.cx, f.cy] for f in fs])
    assert (p["centre"] - centre).norm(dim=1).mean() <= 2.0
    assert (p["size"] - torch.tensor([f.size for f in fs])).abs().mean() <= 1.5


def test_predict_resizes_and_keeps_device(oracle):
    fs = random_factors(np.random.default_rng(5), 8, style="photo")
    x = to_tensor(render_batch(fs, 0))
    big = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    a, b = oracle.predict(x), oracle.predict(big)
    assert (a["shape"] == b["shape"]).float().mean() >= 0.75
    assert set(a) >= {"style", "shape", "colour", "centre", "size"}
    assert a["centre"].shape == (8, 2) and a["size"].shape == (8,) and a["style"].device == x.device
    with pytest.raises(ValueError):
        oracle.predict(x[:, :1])


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = OracleNet(OracleConfig(channels=(8, 8, 8), bottleneck=4, hidden=8))
    save_oracle(net, tmp_path)
    loaded = load_oracle("cpu", directory=tmp_path)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    ref = Oracle(net).predict(x)
    got = loaded.predict(x)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])


def test_missing_weights_is_clear(tmp_path):
    with pytest.raises(ModelNotFoundError, match="scripts/train_shapes_oracle.py"):
        load_oracle(directory=tmp_path)
