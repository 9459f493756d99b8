"""The shapes renderer: determinism, factor coverage, and that factors show up in the pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nada.errors import ConfigError
from nada.shapes.renderer import (
    COLOURS,
    SHAPES,
    STYLES,
    Factors,
    colour_bucket,
    hue_to_rgb,
    random_factors,
    render,
    render_batch,
    to_tensor,
    to_uint8,
)


def _f(**kw):
    base = dict(shape="square", hue=200.0, cx=32.0, cy=32.0, size=14.0, rotation=10.0, style="photo")
    base.update(kw)
    return Factors(**base)


def test_deterministic_per_factors_and_seed():
    fs = random_factors(np.random.default_rng(3), 12)
    a = render_batch(fs, 7)
    b = render_batch(fs, [7 + i for i in range(12)])
    assert a.dtype == np.uint8 and a.shape == (12, 64, 64, 3)
    np.testing.assert_array_equal(a, b)
    for i in range(3):
        np.testing.assert_array_equal(a[i], render(fs[i], 7 + i))


def test_seed_changes_only_nuisance():
    f = _f(style="photo")
    a, b = render(f, 0).astype(int), render(f, 1).astype(int)
    assert np.abs(a - b).sum() > 0  # background texture differs
    # the shape's interior (far from edges) is the same colour whatever the seed
    assert np.abs(a[30:34, 30:34] - b[30:34, 30:34]).max() <= 1


def test_random_factors_cover_everything():
    fs = random_factors(np.random.default_rng(0), 600)
    assert {f.shape for f in fs} == set(SHAPES)
    assert {f.style for f in fs} == set(STYLES)
    assert {f.colour for f in fs} == set(range(len(COLOURS)))
    assert all(f.style == "neon" for f in random_factors(np.random.default_rng(0), 20, style="neon"))
    with pytest.raises(ConfigError):
        random_factors(np.random.default_rng(0), 2, style="oil")


def test_colour_buckets_and_wheel():
    assert [colour_bucket(h) for h in (0, 59.9, 60, 179, 240, 359.9, 360, -1)] == [0, 0, 1, 2, 4, 5, 0, 5]
    red, green = hue_to_rgb(30), hue_to_rgb(210)
    assert red[0] > 150 > red[1] and green[1] > 150 > green[0]
    # continuous across the wrap
    np.testing.assert_allclose(hue_to_rgb(359.999), hue_to_rgb(0.0), atol=0.1)


@pytest.mark.parametrize("style", STYLES)
def test_centre_readable_from_pixels(style):
    """The centroid of the pixels that differ from the background follows the centre factor."""
    for cx, cy in [(25.0, 38.0), (40.0, 27.0)]:
        f = _f(style=style, shape="circle", cx=cx, cy=cy)
        img = render(f, 0).astype(np.float32)
        if style == "photo":  # the grey shadow is offset: take the coloured pixels
            diff = img.max(-1) - img.min(-1)
        else:
            diff = np.abs(img - img[1, 1]).sum(-1)
        ys, xs = np.nonzero(diff > 60)
        assert abs(xs.mean() + 0.5 - cx) < 1.0 and abs(ys.mean() + 0.5 - cy) < 1.0, style


def test_styles_are_distinct_domains():
    f = _f(shape="star", hue=90.0)
    imgs = {s: render(f.replace(style=s), 0).astype(np.float32) for s in STYLES}
    assert imgs["neon"].mean() < 60 < imgs["photo"].mean()  # dark vs light
    assert imgs["sketch"][2, 2].min() > 240  # white paper
    sk = imgs["sketch"]
    assert np.abs(sk[..., 0] - sk[..., 2]).max() < 20  # pencil: no colour
    px = imgs["pixel art"]
    np.testing.assert_array_equal(px[0::2], px[1::2])  # 2x2 blocks
    np.testing.assert_array_equal(px[:, 0::2], px[:, 1::2])


def test_factor_validation():
    with pytest.raises(ConfigError):
        _f(shape="hexagon")
    with pytest.raises(ConfigError):
        _f(style="watercolour")
    with pytest.raises(ConfigError):
        render_batch([_f(), _f()], [0])


def test_to_tensor_round_trip():
    imgs = render_batch(random_factors(np.random.default_rng(1), 3), 0)
    t = to_tensor(imgs)
    assert t.shape == (3, 3, 64, 64) and t.dtype == torch.float32
    assert -1.0 <= t.min() and t.max() <= 1.0
    np.testing.assert_array_equal(to_uint8(t), imgs)
    with pytest.raises(ConfigError):
        to_tensor(np.zeros((2, 64, 64), np.uint8))


def test_factors_from_z_documented_map():
    from nada.shapes.generator_factors import TEXTURE_SEEDS, factors_from_z, texture_seeds

    g = torch.Generator().manual_seed(0)
    z = torch.randn(600, 128, generator=g)
    fs = factors_from_z(z)
    assert {f.shape for f in fs} == set(SHAPES) and {f.colour for f in fs} == set(range(6))
    assert all(f.style == "photo" for f in fs)
    assert set(texture_seeds(z)) == set(range(TEXTURE_SEEDS))
    # the documented formulas, recomputed independently for one row
    r = z[7].double()
    phi = lambda v: 0.5 * (1 + math.erf(float(v) / math.sqrt(2)))  # noqa: E731
    assert fs[7].hue == pytest.approx(math.degrees(math.atan2(r[1], r[0])) % 360)
    assert fs[7].cx == pytest.approx(22 + 20 * phi(r[2])) and fs[7].size == pytest.approx(10 + 10 * phi(r[4]))
    assert fs[7].shape == SHAPES[int(r[7:12].argmax())]
    # smooth: a small step in z moves the continuous factors a little
    near = factors_from_z(z[:50] + 1e-3)
    assert max(abs(a.cx - b.cx) + abs(a.size - b.size) for a, b in zip(fs[:50], near)) < 0.1
    with pytest.raises(ConfigError):
        factors_from_z(torch.zeros(2, 8))
