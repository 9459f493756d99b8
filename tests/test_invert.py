"""Inversion: W / W+ projection recovers a known latent's image on a tiny generator; the noise
regulariser and normalisation against independent formulations; the lr schedule; the losses
(pixel, and LPIPS against the lpips package itself); the VGG16 hub entry and the offline fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nada.errors import ConfigError, ModelNotFoundError
from nada.invert.config import InvertConfig
from nada.invert.losses import LPIPSVGG, PixelLoss, build_loss, lpips_heads_path
from nada.invert.projector import (
    learning_rate,
    noise_regularizer,
    normalize_noise_,
    project,
)
from nada.networks import Generator, GeneratorConfig


@pytest.fixture(scope="module")
def tiny():
    """A random 16 px generator with noise switched on and a measured w_avg, and 4 known latents."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128,
                                  channel_max=16)).eval().requires_grad_(False)
    for m in G.synthesis.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.fill_(0.1)
    G.mapping.estimate_w_avg(2000, torch.Generator().manual_seed(1))
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ws = G.mapping(z)
        target = G.synthesis(ws)  # const noise
        start = G.synthesis(G.mapping.w_avg[None, None].expand(4, G.num_ws, -1))
    return G, ws, target, float((start - target).square().mean())


def test_w_inversion_recovers_a_known_latents_image(tiny):
    G, ws, target, start_mse = tiny
    assert start_mse > 0.3  # w_avg's image is far from the targets
    cfg = InvertConfig(steps=100, loss="pixel", wplus=False, optimize_noise=False, w_avg_samples=2000)
    p = project(G, target, cfg, progress=False)
    mse = (p.images - target).square().mean(dim=(1, 2, 3))
    assert mse.max() < 0.005, mse  # bound: measured 0.0002-0.0026 (start 0.74)
    assert p.ws.shape == (4, G.num_ws, G.w_dim)
    assert torch.equal(p.ws[:, 0], p.ws[:, -1])  # W: one w for every layer
    assert (p.ws[:, 0] - ws[:, 0]).norm(dim=-1).mean() < 0.3 * ws[:, 0].norm(dim=-1).mean()
    with torch.no_grad():  # the returned latents reproduce the returned images
        again = G.synthesis(p.ws, noise=p.noise)
    assert torch.allclose(again, p.images, atol=1e-5)
    assert [round(m["pixel_mse"], 6) for m in p.metrics] == [round(float(v), 6) for v in mse]
    assert p.loss_name == "pixel-multiscale"


def test_wplus_inversion_recovers_a_known_latents_image(tiny):
    G, _, target, _ = tiny
    cfg = InvertConfig(steps=300, loss="pixel", wplus=True, optimize_noise=False, w_avg_samples=2000)
    p = project(G, target, cfg, progress=False)
    mse = (p.images - target).square().mean(dim=(1, 2, 3))
    assert mse.max() < 0.01, mse  # bound: measured 0.0016-0.0066
    assert not torch.equal(p.ws[:, 0], p.ws[:, -1])  # W+: rows optimised separately


def test_optimised_noise_maps_stay_normalised(tiny):
    G, _, target, _ = tiny
    p = project(G, target, InvertConfig(steps=20, loss="pixel", w_avg_samples=500), progress=False)
    assert set(p.noise) == set(G.synthesis.noise_shapes())
    for name, v in p.noise.items():
        assert v.shape == (4, 1, *[G.synthesis.noise_shapes()[name]] * 2)
        flat = v.flatten(1).double()
        assert torch.allclose(flat.mean(1), torch.zeros(4, dtype=torch.float64), atol=1e-5), name
        assert torch.allclose(flat.square().mean(1), torch.ones(4, dtype=torch.float64), atol=1e-4), name


def test_noise_regulariser_and_normalisation_match_a_loop_formulation():
    rng = np.random.default_rng(0)
    maps = {"a": rng.standard_normal((2, 1, 16, 16)), "b": rng.standard_normal((2, 1, 8, 8)),
            "c": rng.standard_normal((2, 1, 4, 4))}
    maps["a"][1] += np.linspace(0, 3, 16)[None, :]  # correlated along x in image 1

    def reg(img):  # per image, explicit shifts and 2x2 means
        total = 0.0
        for v in maps.values():
            x = v[img, 0]
            while True:
                h, w = x.shape
                sx = np.mean([x[i, j] * x[i, (j - 1) % w] for i in range(h) for j in range(w)])
                sy = np.mean([x[i, j] * x[(i - 1) % h, j] for i in range(h) for j in range(w)])
                total += sx**2 + sy**2
                if h <= 8:
                    break
                x = x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        return total

    got = noise_regularizer({k: torch.from_numpy(v) for k, v in maps.items()})
    assert np.allclose(got.numpy(), [reg(0), reg(1)], rtol=1e-10)
    assert got[1] > got[0]  # the correlated image is penalised more
    t = {k: torch.from_numpy(v.copy()) for k, v in maps.items()}
    normalize_noise_(t)
    for k, v in maps.items():
        for i in range(2):
            x = v[i] - v[i].mean()
            assert np.allclose(t[k][i].numpy(), x / np.sqrt((x**2).mean()))


def test_learning_rate_ramps_up_then_down():
    cfg = InvertConfig(steps=100, lr=0.1)
    lrs = [learning_rate(cfg, s / 100) for s in range(100)]
    assert lrs[0] == 0.0
    assert math.isclose(max(lrs), 0.1)
    assert lrs[50] == 0.1  # plateau
    assert lrs[2] < lrs[4] < 0.1  # cosine warm-up over the first 5%
    assert lrs[99] < 0.001 and lrs[80] < lrs[76]  # cosine decay over the last 25%


def test_pixel_loss_is_mse_over_an_average_pooled_pyramid():
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    expected = torch.zeros(2)
    for s in (1, 2, 4, 8):  # 16, 8, 4, 2 px; the default stops at 4 px
        if 16 // s < 4:
            break
        xs = x.reshape(2, 3, 16 // s, s, 16 // s, s).mean(dim=(3, 5))
        ys = y.reshape(2, 3, 16 // s, s, 16 // s, s).mean(dim=(3, 5))
        expected += ((xs - ys) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(PixelLoss()(x, y), expected, atol=1e-6)
    assert torch.equal(PixelLoss()(x, x), torch.zeros(2))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lpips_matches_the_lpips_package_with_the_same_random_backbone():
    lpips = pytest.importorskip("lpips")
    torch.manual_seed(0)
    ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()  # heads shipped, trunk random
    backbone = {}
    slices = [ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5]
    for sl in slices:  # the package keeps torchvision's layer indices inside its slices
        for idx, layer in sl._modules.items():
            for pname, t in layer.state_dict().items():
                backbone[f"features.{idx}.{pname}"] = t
    heads = torch.load(lpips_heads_path(), map_location="cpu", weights_only=True)
    ours = LPIPSVGG(backbone, heads).eval()
    x, y = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        want = ref(x, y).flatten()
        got = ours(x, y)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), (got, want)
    assert torch.allclose(ours(x, x), torch.zeros(3), atol=1e-7)


def test_auto_loss_falls_back_to_pixels_offline_and_lpips_names_the_download(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NADA_CACHE", str(tmp_path))  # an empty weights cache
    with caplog.at_level("INFO"):
        loss = build_loss("auto")
    assert loss.name == "pixel-multiscale"
    assert "nada download vgg16-imagenet" in caplog.text
    with pytest.raises(ModelNotFoundError, match=r"nada download vgg16-imagenet") as exc:
        build_loss("lpips")
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="loss"):
        build_loss("ssim")
    with pytest.raises(ConfigError, match="--clip"):
        build_loss("pixel", clip_weight=1.0)


def test_vgg16_hub_entry_has_torchvisions_url_and_sha256(capsys):
    from nada import hub
    from nada.cli import main

    assert main(["download", "--list"]) == 0
    assert "vgg16-imagenet" in capsys.readouterr().out

    e = hub.AUXILIARY["vgg16-imagenet"]
    assert e.url == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert e.sha256.startswith("397923af") and len(e.sha256) == 64  # torchvision names files by the hash prefix
    assert e.filename == "vgg16-397923af.pth"
    assert "dlib-landmarks-68" in hub.AUXILIARY


@pytest.mark.parametrize("bad", [{"steps": 0}, {"lr": 0}, {"loss": "l2"}, {"noise_ramp": 0}, {"batch": 0},
                                 {"noise_reg": -1}])
def test_config_refuses_bad_values(bad):
    with pytest.raises(ConfigError):
        InvertConfig(**bad)
