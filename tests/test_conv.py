"""The 3×3 convolution's Winograd CPU path against the float64 reference, forward and backward."""

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ops import conv as conv_mod
from stylegan2_ops import conv3x3

needs_plugin = pytest.mark.skipif(conv_mod.get_plugin() is None, reason="the CPU Winograd extension did not build")


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
def test_wide_layers_use_it_and_ref_mode_does_not(monkeypatch):
    x = torch.randn(2, 128, 64, 64)
    w = torch.randn(128, 128, 3, 3) * 0.03
    assert conv_mod.uses_winograd(x, w)
    assert not conv_mod.uses_winograd(x[:, :64], w[:64, :64])        # narrow: the reference
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
        raise conv_mod._plugin.PluginBuildError("building the CPU Winograd kernels failed:\nfake compiler error")

    monkeypatch.setattr(conv_mod, "build", failing_build)
    monkeypatch.setattr(conv_mod, "_state", {"tried": False, "module": None, "error": None, "path": None})
    x, w = torch.randn(2, 128, 64, 64), torch.randn(128, 128, 3, 3) * 0.03
    with pytest.warns(RuntimeWarning, match="fake compiler error"):
        assert not conv_mod.uses_winograd(x, w)
    torch.testing.assert_close(conv3x3(x, w), F.conv2d(x, w, padding=1), rtol=0, atol=0)  # no second warning
    assert calls == [1]
    assert conv_mod.build_state().startswith("build failed: building the CPU Winograd kernels failed")
