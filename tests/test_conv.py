"""The 3×3 convolution's Winograd CPU path against the float64 reference, forward and backward."""

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ops import _cpu_plugin, conv3x3
from stylegan2_ops import conv as conv_mod

needs_plugin = pytest.mark.skipif(_cpu_plugin.get_plugin() is None, reason="the CPU extension did not build")


def _rel(a, b):
    return ((a.double() - b).abs().max() / b.abs().max()).item()


@needs_plugin
@pytest.mark.parametrize("shape", [(2, 8, 16, 9, 7), (1, 4, 4, 4, 4), (2, 32, 16, 13, 16), (1, 3, 5, 1, 6)])
def test_winograd_matches_reference(shape):
    """Odd sizes and partial tiles: values and both gradients within fp32 rounding of the transforms."""
    n, c, k, h, w = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g, requires_grad=True)
    wt = torch.randn(k, c, 3, 3, generator=g, requires_grad=True)
    y = conv_mod._Winograd.apply(x, wt)
    ref = F.conv2d(x.double(), wt.double(), padding=1)
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad(y, (x, wt), grad.float())
    rx, rw = torch.autograd.grad(ref, (x, wt), grad)
    assert y.shape == ref.shape
    assert _rel(y, ref) < 2e-5 and _rel(gx, rx) < 2e-5 and _rel(gw, rw) < 2e-5


@needs_plugin
@pytest.mark.parametrize("shape", [(2, 8, 16, 9, 7), (3, 20, 6, 13, 16), (1, 130, 70, 21, 18)])
@pytest.mark.parametrize("needs", [(True, True, True), (True, False, True), (False, True, False), (False, False, True)])
def test_modulated_winograd_matches_reference(shape, needs):
    """The modulation folded into the kernels: conv(x * s) and the gradients that are asked for
    (x, weight, s in any combination, as adapters and frozen twins ask) against float64."""
    n, c, k, h, w = shape
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, c, h, w, generator=g).requires_grad_(needs[0])
    wt = torch.randn(k, c, 3, 3, generator=g).requires_grad_(needs[1])
    s = torch.randn(n, c, generator=g).requires_grad_(needs[2])
    y = conv_mod._Winograd.apply(x, wt, s)
    ref = F.conv2d(x.double() * s.double()[:, :, None, None], wt.double(), padding=1)
    assert _rel(y, ref) < 2e-5
    wanted = [t for t, need in zip((x, wt, s), needs) if need]
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for got, exp in zip(torch.autograd.grad(y, wanted, grad.float()), torch.autograd.grad(ref, wanted, grad)):
        assert got.shape == exp.shape and _rel(got, exp) < 2e-5


def test_scale_reference_path_is_the_multiply_then_conv():
    """Off the Winograd path ``scale`` is exactly the multiply the layers did before."""
    g = torch.Generator().manual_seed(3)
    x, w, s = torch.randn(2, 16, 8, 8, generator=g), torch.randn(8, 16, 3, 3, generator=g), torch.randn(2, 16, generator=g)
    assert not conv_mod.uses_winograd(x, w)
    torch.testing.assert_close(conv3x3(x, w, s), F.conv2d(x * s.reshape(2, 16, 1, 1), w, padding=1), rtol=0, atol=0)


@needs_plugin
def test_wide_layers_use_it_and_ref_mode_does_not(monkeypatch):
    """The measured size rule: wide layers with enough tiles; narrow ones (32-127 channels) only
    on maps up to 64²; fewer than 32 channels, few tiles or float64 never."""
    x = torch.randn(2, 128, 64, 64)
    w = torch.randn(128, 128, 3, 3) * 0.03
    assert conv_mod.uses_winograd(x, w)
    assert conv_mod.uses_winograd(x[:, :64], w[:64, :64])            # narrow on a 64² map
    assert conv_mod.uses_winograd(torch.randn(16, 32, 64, 64), w[:32, :32])
    assert not conv_mod.uses_winograd(torch.randn(1, 64, 128, 128), w[:64, :64])  # narrow, large map
    assert not conv_mod.uses_winograd(x[:, :16], w[:16, :16])        # too narrow
    assert not conv_mod.uses_winograd(x[:1, :, :16, :16], w)         # few tiles
    assert not conv_mod.uses_winograd(x.double(), w.double())
    monkeypatch.setenv("NADA_OPS", "ref")
    assert not conv_mod.uses_winograd(x, w)
    torch.testing.assert_close(conv3x3(x, w), F.conv2d(x, w, padding=1), rtol=0, atol=0)


@needs_plugin
def test_input_only_gradient_and_no_double_backward():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, generator=g)
    (gx,) = torch.autograd.grad(conv_mod._Winograd.apply(x, w).square().sum(), x, create_graph=True)
    ref = torch.autograd.grad(F.conv2d(x.double(), w.double(), padding=1).square().sum(), x)[0]
    assert _rel(gx, ref) < 2e-5
    with pytest.raises(RuntimeError):
        gx.sum().backward()  # once_differentiable: a second derivative is refused, not wrong


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    """A build failure warns once, is never retried, and the conv runs on torch's path."""
    calls = []

    def failing_build(verbose=False):
        calls.append(1)
        raise _cpu_plugin._plugin.PluginBuildError("building the CPU kernels failed:\nfake compiler error")

    monkeypatch.setattr(_cpu_plugin, "build", failing_build)
    monkeypatch.setattr(_cpu_plugin, "_state", {"tried": False, "module": None, "error": None, "path": None})
    x, w = torch.randn(2, 128, 64, 64), torch.randn(128, 128, 3, 3) * 0.03
    with pytest.warns(RuntimeWarning, match="fake compiler error"):
        assert not conv_mod.uses_winograd(x, w)
    torch.testing.assert_close(conv3x3(x, w), F.conv2d(x, w, padding=1), rtol=0, atol=0)  # no second warning
    assert calls == [1]
    assert _cpu_plugin.build_state().startswith("build failed: building the CPU kernels failed")
