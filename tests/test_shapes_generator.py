"""The shipped shapes generator (``pretrained/shapes_generator.safetensors``): loads through
``nada.checkpoints.load_generator`` as the ``shapes-64`` architecture, tracks ``w_avg``, draws what
``factors_from_z`` says (pixels against the exact render; oracle judgements when the oracle is
shipped), stays photo-style under truncation, and interpolates smoothly. Small-sample versions
of issue 5's thresholds, on latents disjoint from the training stream."""

from __future__ import annotations

import pytest
import torch

from nada.checkpoints import load_generator
from nada.networks import GeneratorConfig
from nada.paths import pretrained_dir
from nada.shapes.generator_factors import factors_from_z, render_from_z
from nada.shapes.renderer import SHAPES, STYLES, to_tensor

PATH = pretrained_dir() / "shapes_generator.safetensors"
SEED = 31_337  # training draws z from seeds seed * 1_000_003 + step; this stream is separate

pytestmark = pytest.mark.skipif(not PATH.is_file(), reason=f"{PATH} not shipped yet")


@pytest.fixture(scope="module")
def G():
    torch.set_num_threads(2)
    return load_generator(PATH, "cpu").generator.eval()


@pytest.fixture(scope="module")
def oracle():
    from nada.errors import ModelNotFoundError
    from nada.shapes.oracle import load_oracle

    try:
        return load_oracle("cpu")
    except ModelNotFoundError as exc:
        pytest.skip(f"oracle not shipped: {exc}")


def _z(n: int, offset: int = 0) -> torch.Tensor:
    return torch.randn(n, 128, generator=torch.Generator().manual_seed(SEED + offset))


def test_file_is_small_and_the_shapes_preset(G):
    assert PATH.stat().st_size < 8 * 2**20
    assert G.cfg == GeneratorConfig.preset("shapes-64")  # the name field is not compared
    assert G(_z(2), noise_mode="const").shape == (2, 3, 64, 64)


@torch.no_grad()
def test_w_avg_is_the_mean_of_w(G):
    w = G.mapping(_z(4000, 1))[:, 0]
    spread = (w - w.mean(0)).norm(dim=1).mean()
    # the shipped average agrees with a fresh estimate far better than a typical w does
    assert (G.mapping.w_avg - w.mean(0)).norm() < 0.1 * spread


@torch.no_grad()
def test_draws_the_render_of_its_factors(G):
    z = _z(64, 2)
    img = G(z, noise_mode="const")
    target = to_tensor(render_from_z(z))
    err = (img - target).abs().mean(dim=(1, 2, 3))
    # compared with a render of someone else's factors, its own render is clearly closer
    other = (img - target.roll(1, 0)).abs().mean(dim=(1, 2, 3))
    assert err.mean() < 0.12
    assert (err < other).float().mean() >= 0.95


@torch.no_grad()
def test_oracle_agrees_with_ground_truth(G, oracle):
    z = _z(200, 3)
    p = oracle.predict(G(z, noise_mode="const"))
    fs = factors_from_z(z)
    assert (p["style"] == STYLES.index("photo")).float().mean() >= 0.95
    centre = torch.tensor([[f.cx, f.cy] for f in fs])
    assert (p["centre"] - centre).norm(dim=1).mean() <= 2.0


@torch.no_grad()
def test_oracle_shape_agrees_with_ground_truth(G, oracle):
    # issue 5 asks for 95%; the shipped weights measure 96.1% on 1,000 fresh latents
    # (pretrained/shapes_generator_metrics.json) and 98% on these 200; a binomial sample of 200 at
    # 96.1% falls below 92% in 0.2% of draws (at exactly 95%: 2.4%)
    z = _z(200, 3)
    p = oracle.predict(G(z, noise_mode="const"))
    truth = torch.tensor([SHAPES.index(f.shape) for f in factors_from_z(z)])
    assert (p["shape"] == truth).float().mean() >= 0.92


@torch.no_grad()
def test_truncated_samples_stay_photo(G, oracle):
    p = oracle.predict(G(_z(100, 4), truncation_psi=0.7, noise_mode="const"))
    assert (p["style"] == STYLES.index("photo")).float().mean() >= 0.9


@torch.no_grad()
def test_interpolation_is_gradual(G):
    a, b = _z(2, 5)
    t = torch.linspace(0, 1, 16)[:, None]
    z = a[None] + t * (b - a)[None]
    step_g = (G(z, noise_mode="const").diff(dim=0)).abs().mean(dim=(1, 2, 3))
    step_r = to_tensor(render_from_z(z)).diff(dim=0).abs().mean(dim=(1, 2, 3))
    # no step jumps much more than the exact render jumps along the same path (which is abrupt
    # only where the discrete shape flips)
    assert (step_g <= 1.5 * step_r + 0.05).all(), (step_g, step_r)
