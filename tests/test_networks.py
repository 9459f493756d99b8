"""nada.networks: config presets, official config-f shapes, modulated conv against independent
formulations, noise modes, truncation, style mixing, layer naming."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import stylegan2_ops
from nada import layer_groups
from nada.errors import ConfigError
from nada.networks import Generator, GeneratorConfig, modulated_conv2d, style_mix


def tiny_cfg(res: int = 16, **kw) -> GeneratorConfig:
    base = dict(img_resolution=res, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    base.update(kw)
    return GeneratorConfig(**base)


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    g = Generator(tiny_cfg()).eval()
    with torch.no_grad():  # non-zero noise strengths and w_avg so the tests see them
        for ref in g.layers():
            if hasattr(ref.module, "noise_strength"):
                ref.module.noise_strength.fill_(0.3)
        g.mapping.w_avg.normal_()
    return g


# --- config -------------------------------------------------------------------------------

def test_config_f_1024_matches_official_shapes():
    cfg = GeneratorConfig.preset("config-f-1024")
    assert GeneratorConfig.preset("ffhq-1024") == cfg
    # Official config-f channel table (StyleGAN2 paper, fmap_base 16384 x2, fmap_max 512).
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    assert {r: cfg.channels(r) for r in cfg.block_resolutions} == table
    assert cfg.num_ws == 18 and cfg.channel_multiplier == 2
    g = Generator(cfg)
    sd = {k: tuple(v.shape) for k, v in g.state_dict().items()}
    assert sd["mapping.fc0.weight"] == (512, 512)
    assert sd["mapping.fc7.bias"] == (512,)
    assert sd["mapping.w_avg"] == (512,)
    assert sd["synthesis.b4.const"] == (512, 4, 4)
    assert sd["synthesis.b128.conv0.weight"] == (256, 512, 3, 3)
    assert sd["synthesis.b128.conv0.affine.weight"] == (512, 512)
    assert sd["synthesis.b1024.conv1.weight"] == (32, 32, 3, 3)
    assert sd["synthesis.b1024.conv1.noise_const"] == (1024, 1024)
    assert sd["synthesis.b1024.conv1.noise_strength"] == ()
    assert sd["synthesis.b1024.torgb.weight"] == (3, 32, 1, 1)
    # The parameter count NVIDIA's stylegan2-ada-pytorch prints for its config-f G.
    assert sum(p.numel() for p in g.parameters()) == 30_370_060


def test_presets_and_dict_round_trip():
    for name in ("256", "512", "shapes-64"):
        cfg = GeneratorConfig.preset(name)
        assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    assert GeneratorConfig.preset("256").img_resolution == 256
    assert GeneratorConfig.preset("shapes-64").img_resolution == 64
    with pytest.raises(ConfigError, match="unknown generator preset"):
        GeneratorConfig.preset("ffhq-2048")
    with pytest.raises(ConfigError, match="img_resolution"):
        GeneratorConfig(img_resolution=100)
    with pytest.raises(ConfigError, match="unknown generator config keys"):
        GeneratorConfig.from_dict({"img_resolution": 64, "bogus": 1})


def test_channel_multiplier_is_rosinality_rule():
    for m in (1, 2, 4):
        cfg = GeneratorConfig.from_channel_multiplier(1024, m)
        ros = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}
        assert {r: cfg.channels(r) for r in cfg.block_resolutions} == {r: min(c, 512) for r, c in ros.items()}
        assert cfg.channel_multiplier == m


# --- modulated conv -------------------------------------------------------------------------

def _per_sample_weights(w, s, demod=True):
    out = []
    for i in range(s.shape[0]):
        wi = w * s[i][None, :, None, None]
        if demod:
            wi = wi / (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(wi)
    return out


@pytest.mark.parametrize("fused", [False, True])
def test_modulated_conv_matches_per_sample_convolution(fused):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    s = torch.randn(3, 5, generator=g, dtype=torch.float64)
    f = stylegan2_ops.setup_filter([1, 3, 3, 1])
    # same-resolution conv: one plain conv2d per sample with its own demodulated weight
    y = modulated_conv2d(x, w, s, fused=fused)
    ref = torch.cat([F.conv2d(x[i : i + 1], wi, padding=1) for i, wi in enumerate(_per_sample_weights(w, s))])
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    # 2x up-sampling conv = zero insertion, [1,3,3,1] filter (gain 4), true convolution
    y = modulated_conv2d(x, w, s, up=2, resample_filter=f, fused=fused)
    ref = torch.cat([
        F.conv2d(stylegan2_ops.upfirdn2d(x[i : i + 1], f, up=2, padding=[3, 2, 3, 2], gain=4), wi.flip([2, 3]))
        for i, wi in enumerate(_per_sample_weights(w, s))
    ])
    assert y.shape == (3, 4, 12, 12)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    # no demodulation (ToRGB)
    y = modulated_conv2d(x, w, s, demodulate=False, fused=fused)
    ref = torch.cat([F.conv2d(x[i : i + 1], wi, padding=1) for i, wi in enumerate(_per_sample_weights(w, s, False))])
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("matmul", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_pointwise_modulated_conv_matches_per_sample_convolution(n, channels_last, matmul, monkeypatch):
    """ToRGB's 1x1 modulated conv (on large CPU maps batched matmuls, layout-dependent; here
    forced on or off by the size threshold) against one plain conv per sample, with and without
    gradients; first and second derivatives by gradcheck."""
    from nada.networks import layers

    monkeypatch.setattr(layers, "POINTWISE_MIN_PIXELS", 0 if matmul else 1 << 30)
    calls = []
    original = layers._pointwise_modulated
    monkeypatch.setattr(layers, "_pointwise_modulated", lambda *a: calls.append(1) or original(*a))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 5, 4, 3, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(3, 5, 1, 1, generator=g, dtype=torch.float64)
    s = torch.randn(n, 5, generator=g, dtype=torch.float64)
    ref = torch.cat([F.conv2d(x[i : i + 1], wi) for i, wi in enumerate(_per_sample_weights(w, s, False))])
    with torch.no_grad():
        torch.testing.assert_close(modulated_conv2d(x, w, s, demodulate=False), ref, rtol=0, atol=1e-12)
    xg, wg, sg = (t.clone().requires_grad_(True) for t in (x, w, s))
    y = modulated_conv2d(xg, wg, sg, demodulate=False)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    y.square().sum().backward()
    ref_grads = torch.autograd.grad(
        torch.cat([F.conv2d(x[i : i + 1], wg * sg[i][None, :, None, None]) for i in range(n)]).square().sum(),
        [wg, sg])
    torch.testing.assert_close(wg.grad, ref_grads[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(sg.grad, ref_grads[1], rtol=0, atol=1e-10)
    f = lambda a, b, c: modulated_conv2d(a, b, c, demodulate=False)  # noqa: E731
    assert torch.autograd.gradcheck(f, (xg, wg, sg))
    assert torch.autograd.gradgradcheck(f, (xg, wg, sg))
    assert bool(calls) == matmul


# --- generator behaviour --------------------------------------------------------------------

def test_forward_shape_dtype_and_layers(G):
    z = torch.randn(2, G.z_dim)
    img = G(z)
    assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32 and torch.isfinite(img).all()
    names = [(r.name, r.w_index) for r in G.layers()]
    assert [n for n, _ in names] == layer_groups.layer_names(16)
    assert all(i == layer_groups.w_index(n, 16) for n, i in names)
    assert G.num_ws == 2 * int(math.log2(16)) - 2 == max(i for _, i in names) + 1
    g64 = Generator(tiny_cfg()).double()
    assert g64(z.double()).dtype == torch.float64


def test_each_layer_uses_its_style_index(G):
    """Changing ws[:, i] must change exactly the layers LayerRef says use index i."""
    ws = G.mapping(torch.randn(1, G.z_dim))
    seen: dict[str, torch.Tensor] = {}
    hooks = [r.module.affine.register_forward_hook(lambda m, inp, out, n=r.name: seen.__setitem__(n, inp[0].clone()))
             for r in G.layers()]
    try:
        G.synthesis(ws)
        before = dict(seen)
        ws2 = ws.clone()
        ws2[:, 3] += 1
        G.synthesis(ws2)
    finally:
        for h in hooks:
            h.remove()
    changed = {n for n in before if not torch.equal(before[n], seen[n])}
    assert changed == {r.name for r in G.layers() if r.w_index == 3} == {"b8.torgb", "b16.conv0"}


def test_noise_modes(G):
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
        assert torch.equal(a, b)
        none = G(z, noise_mode="none")
        assert not torch.allclose(a, none)
        r1 = G(z, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r2 = G(z, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r3 = G(z, noise_mode="random", generator=torch.Generator().manual_seed(6))
        assert torch.equal(r1, r2) and not torch.allclose(r1, r3)
        # explicit noise: const buffers passed in reproduce const mode; shared draws reproduce
        noisy = G.synthesis.noise_shapes()
        const = {r.name: r.module.noise_const[None, None] for r in G.layers() if r.name in noisy}
        ws = G.mapping(z)
        torch.testing.assert_close(G.synthesis(ws, noise=const), a)
        n1 = G.make_noise(2, generator=torch.Generator().manual_seed(9))
        n2 = G.make_noise(2, generator=torch.Generator().manual_seed(9))
        assert n1.keys() == set(G.synthesis.noise_shapes()) and all(torch.equal(n1[k], n2[k]) for k in n1)
        assert torch.equal(G.synthesis(ws, noise=n1), G.synthesis(ws, noise=n2))
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="bogus")
    assert "synthesis.b16.conv1.noise_const" in G.state_dict()


def test_forward_in_two_parts_equals_one_forward(G):
    # forward_to(res) then forward(start=state) runs each block once, in order: the same values
    # as one forward, and gradients reach the weights above the split
    S = G.synthesis
    ws = G.mapping(torch.randn(3, G.z_dim))
    noise = G.make_noise(3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = S(ws, noise=noise)
        for res in S.block_resolutions:
            state = S.forward_to(ws, res, noise=noise)
            assert state.res == res and state.img.shape[-1] == res == state.x.shape[-1]
            assert torch.equal(S(ws, noise=noise, start=state), whole)
    S.zero_grad(set_to_none=True)
    with torch.no_grad():
        state = S.forward_to(ws, 8, noise=noise)
    S(ws.detach(), noise=noise, start=state).sum().backward()
    assert S.b16.conv1.weight.grad is not None and S.b8.conv1.weight.grad is None
    S.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="no block at 12px"):
        S.forward_to(ws, 12)


def test_truncation(G):
    z = torch.randn(3, G.z_dim)
    ws0 = G.mapping(z, truncation_psi=0)
    torch.testing.assert_close(ws0, G.mapping.w_avg.expand_as(ws0))
    ws1 = G.mapping(z)
    half = G.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(half, G.mapping.w_avg + 0.5 * (ws1 - G.mapping.w_avg))
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], half[:, :2])
    torch.testing.assert_close(cut[:, 2:], ws1[:, 2:])


def test_w_avg_updates_only_when_asked():
    g = Generator(tiny_cfg()).train()
    g.mapping(torch.randn(4, 16))
    assert torch.count_nonzero(g.mapping.w_avg) == 0
    g.mapping(torch.randn(4, 16), update_w_avg=True)
    assert torch.count_nonzero(g.mapping.w_avg) > 0


def test_style_mixing(G):
    za, zb = torch.randn(2, G.z_dim), torch.randn(2, G.z_dim)
    wa, wb = G.mapping(za), G.mapping(zb)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(G.mix(wa, wb, G.num_ws)), G.synthesis(wa))
        torch.testing.assert_close(G.synthesis(G.mix(wa, wb, 0)), G.synthesis(wb))
    mixed = style_mix(wa, wb, 3)
    assert torch.equal(mixed[:, :3], wa[:, :3]) and torch.equal(mixed[:, 3:], wb[:, 3:])
    # random mixing draws only from the given generator, never the global RNG
    torch.manual_seed(123)
    state = torch.get_rng_state()
    s1 = G.sample_ws(6, generator=torch.Generator().manual_seed(4), mixing_prob=0.9)
    assert torch.equal(torch.get_rng_state(), state)
    s2 = G.sample_ws(6, generator=torch.Generator().manual_seed(4), mixing_prob=0.9)
    assert torch.equal(s1, s2)
    # every row is w_a up to some layer, then w_b: at most one switch per sample
    switches = (s1[:, 1:] != s1[:, :-1]).any(dim=2).sum(dim=1)
    assert switches.max() <= 1 and switches.sum() >= 1


def test_gradients_reach_ws_and_weights(G):
    ws = G.mapping(torch.randn(2, G.z_dim)).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert G.synthesis.b16.conv1.weight.grad.abs().sum() > 0
    G.zero_grad(set_to_none=True)


@pytest.mark.parametrize("batch", [1, 2])
def test_wide_cpu_kernels_match_the_reference_generator(batch, monkeypatch):
    """A generator wide enough for the CPU kernels (Winograd conv with the modulation folded in,
    fused epilogue, channels-last blocks; batch 1 unfused where Winograd runs) renders and
    differentiates like the pure-PyTorch reference path (NADA_OPS=ref).

    Gradients are compared with the leaky ReLU's slope set to 1, where it has no kink: at the
    real slope a pre-activation within float rounding of 0 can take the other branch in one
    path, which changes that element's gradient by a finite step that spreads to every layer
    below (seen on an AMD EPYC: 1e-3 of the ws gradient, with both paths within 1e-5 of float64
    layer by layer). The images are compared at the real slope."""
    from dataclasses import replace

    from stylegan2_ops import _cpu_plugin
    from stylegan2_ops import conv as conv_mod
    from stylegan2_ops.bias_act import ACTIVATIONS

    if _cpu_plugin.get_plugin() is None:
        pytest.skip("the CPU extension did not build")
    torch.manual_seed(0)
    G = Generator(tiny_cfg(64, channel_base=8192, channel_max=128))
    with torch.no_grad():
        for ref in G.layers():
            if hasattr(ref.module, "noise_strength"):
                ref.module.noise_strength.fill_(0.3)
    ws = torch.randn(batch, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(1)).requires_grad_()
    assert conv_mod.uses_winograd(torch.zeros(batch, 128, 64, 64), G.synthesis.b64.conv1.weight)
    grad = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(2))

    def run(ops_mode):
        monkeypatch.setenv("NADA_OPS", ops_mode)
        G.zero_grad()
        ws.grad = None
        img = G.synthesis(ws, noise_mode="const")
        img.backward(grad)
        return img.detach(), ws.grad.clone(), {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}

    def rel(a, b):
        return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()

    img, _, _ = run("auto")
    img_r, _, _ = run("ref")
    assert rel(img, img_r) < 1e-4
    monkeypatch.setitem(ACTIVATIONS, "lrelu", replace(ACTIVATIONS["lrelu"], def_alpha=1.0))
    img, gws, grads = run("auto")
    img_r, gws_r, grads_r = run("ref")
    assert rel(img, img_r) < 1e-4 and rel(gws, gws_r) < 1e-4
    assert grads.keys() == grads_r.keys() and max(rel(grads[k], grads_r[k]) for k in grads) < 1e-4
