"""The synthesis conv's fused CPU epilogue against the float64 reference, both layouts, every noise form."""

import pytest
import torch

from stylegan2_ops import _cpu_plugin
from stylegan2_ops import epilogue as epi

needs_plugin = pytest.mark.skipif(_cpu_plugin.get_plugin() is None, reason="the CPU extension did not build")


def _rel(a, b):
    return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _noise(kind, n, h, w, g):
    return {"none": None, "shared": torch.randn(h, w, generator=g), "shared4": torch.randn(1, 1, h, w, generator=g),
            "per-sample": torch.randn(n, 1, h, w, generator=g)}[kind]


@needs_plugin
@pytest.mark.parametrize("shape", [(2, 128, 9, 7), (1, 130, 33, 40)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("noise_kind", ["none", "shared", "shared4", "per-sample"])
def test_fused_epilogue_matches_reference(shape, channels_last, noise_kind, monkeypatch):
    """Values and the gradients of y, dcoefs, bias and the noise strength, within fp32 rounding;
    the result keeps y's memory layout (odd small maps, let through the size rule, reach the
    kernel's partial blocks)."""
    monkeypatch.setattr(epi, "MIN_ELEMENTS", 0)
    n, c, h, w = shape
    g = torch.Generator().manual_seed(0)
    y = torch.randn(shape, generator=g)
    if channels_last:
        y = y.to(memory_format=torch.channels_last)
    y.requires_grad_()
    d = (torch.rand(n, c, generator=g) + 0.1).requires_grad_()
    b = torch.randn(c, generator=g).requires_grad_()
    strength = torch.tensor(0.7, requires_grad=True)
    base = _noise(noise_kind, n, h, w, g)
    assert epi._fused_ok(y, d, None if base is None else base * strength, None, None)
    out = epi.conv_epilogue(y, d, None if base is None else base * strength, b)
    ref = epi._reference(y.double(), d.double(), None if base is None else base.double() * strength.double(),
                         b.double(), None)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert _rel(out, ref) < 1e-6
    wanted = [y, d, b] + ([strength] if base is not None else [])
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for got, exp in zip(torch.autograd.grad(out, wanted, grad.float()), torch.autograd.grad(ref, wanted, grad)):
        assert got.shape == exp.shape and _rel(got, exp) < 5e-6


def test_layers_that_do_not_qualify_take_the_reference_bit_for_bit():
    """Small maps (below MIN_ELEMENTS, where the call's overhead outweighs the passes saved), a
    clamp, no demodulation and per-channel noise run the reference exactly."""
    g = torch.Generator().manual_seed(1)
    y, d, b = torch.randn(2, 128, 32, 32, generator=g), torch.rand(2, 128, generator=g), torch.randn(128, generator=g)
    assert y.numel() >= epi.MIN_ELEMENTS and epi._fused_ok(y, d, None, None, None)
    small = torch.randn(2, 128, 8, 8, generator=g)
    cases = [(small, d, None, b, None), (y, d, None, b, 256.0), (y, None, None, b, None),
             (y, d, torch.randn(1, 128, 32, 32, generator=g), b, None)]
    for args in cases:
        yy, dd, noise, _, clamp = args
        assert not epi._fused_ok(yy, dd, noise, clamp, None)
        torch.testing.assert_close(epi.conv_epilogue(*args), epi._reference(*args), rtol=0, atol=0)


def test_ref_mode_turns_it_off(monkeypatch):
    y, d = torch.randn(2, 128, 32, 32), torch.rand(2, 128)
    monkeypatch.setenv("NADA_OPS", "ref")
    assert not epi._fused_ok(y, d, None, None, None)


def test_failed_build_falls_back(monkeypatch):
    def failing_build(verbose=False):
        raise _cpu_plugin._plugin.PluginBuildError("building the CPU kernels failed:\nfake compiler error")

    monkeypatch.setattr(_cpu_plugin, "build", failing_build)
    monkeypatch.setattr(_cpu_plugin, "_state", {"tried": False, "module": None, "error": None, "path": None})
    y, d, b = torch.randn(2, 128, 32, 32), torch.rand(2, 128), torch.randn(128)
    with pytest.warns(RuntimeWarning, match="fake compiler error"):
        out = epi.conv_epilogue(y, d, None, b)
    torch.testing.assert_close(out, epi._reference(y, d, None, b, None), rtol=0, atol=0)
