"""The up-sampling transposed conv's CPU path (gathered-GEMM weight gradient) against float64."""

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ops import conv_up2
from stylegan2_ops import upconv


def _rel(a, b):
    return ((a.double() - b).abs().max() / b.abs().max()).item()


def _inputs(n, c, o, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).to(memory_format=torch.channels_last).requires_grad_()
    wt = torch.randn(o, c, 3, 3, generator=g, requires_grad=True)
    return x, wt, g


@pytest.mark.parametrize("shape", [(2, 128, 130, 5, 7), (1, 136, 128, 8, 8), (3, 128, 192, 1, 4)])
def test_fast_path_matches_float64(shape):
    """Values and both gradients of the fast path against the transposed conv in float64."""
    x, wt, g = _inputs(*shape)
    assert upconv.qualifies(x, wt)
    y = conv_up2(x, wt)
    ref = F.conv_transpose2d(x.double(), wt.double().transpose(0, 1), stride=2)
    assert y.shape == ref.shape == (shape[0], shape[2], 2 * shape[3] + 1, 2 * shape[4] + 1)
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad(y, (x, wt), grad.float().contiguous(memory_format=torch.channels_last))
    rx, rw = torch.autograd.grad(ref, (x, wt), grad)
    assert _rel(y, ref) < 1e-5 and _rel(gx, rx) < 1e-5 and _rel(gw, rw) < 1e-5


def test_weight_grad_is_the_tap_sum():
    """The gathered GEMM against the definition written as a loop over taps and pixels."""
    x, wt, g = _inputs(2, 3, 4, 3, 2)
    grad = torch.randn(2, 4, 7, 5, generator=g, dtype=torch.float64)
    xd = x.detach().double()
    want = torch.zeros(4, 3, 3, 3, dtype=torch.float64)
    for a in range(3):
        for b in range(3):
            for i in range(3):
                for j in range(2):
                    want[:, :, a, b] += grad[:, :, 2 * i + a, 2 * j + b].t() @ xd[:, :, i, j]
    got = upconv.weight_grad(grad.float().contiguous(memory_format=torch.channels_last), x.detach())
    assert _rel(got, want) < 1e-6
    # and an NCHW gradient (whatever layout the filter's backward hands over) gives the same
    got_nchw = upconv.weight_grad(grad.float().contiguous(), x.detach())
    assert torch.equal(got, got_nchw)


def test_second_order_gradients_match_the_reference():
    """The backward is made of differentiable ops: a gradient penalty's gradient matches."""
    x, wt, g = _inputs(1, 128, 128, 3, 3)
    grad = torch.randn(1, 128, 7, 7, generator=g)

    def penalty(fn):
        gx, gw = torch.autograd.grad((fn(x, wt) * grad).sum(), (x, wt), create_graph=True)
        return torch.autograd.grad(gx.square().sum() + gw.square().sum(), (x, wt))

    fast = penalty(conv_up2)
    ref = penalty(lambda a, b: F.conv_transpose2d(a, b.transpose(0, 1), stride=2))
    for f, r in zip(fast, ref):
        assert _rel(f, r.double()) < 1e-5


def test_where_the_fast_path_runs(monkeypatch):
    """Wide channels-last CPU fp32 maps only; narrow, NCHW, float64 and NADA_OPS=ref keep the reference."""
    x, wt, _ = _inputs(1, 128, 128, 4, 4)
    assert upconv.qualifies(x, wt)
    assert not upconv.qualifies(x.detach().contiguous(), wt)
    assert not upconv.qualifies(x.double(), wt.double())
    narrow_x, narrow_w, _ = _inputs(2, 64, 64, 4, 4)
    assert not upconv.qualifies(narrow_x, narrow_w)
    calls = []
    monkeypatch.setattr(upconv._UpConv, "apply", lambda *a: calls.append(1) or F.conv_transpose2d(
        a[0], a[1].transpose(0, 1), stride=2))
    conv_up2(x, wt, impl="ref")
    conv_up2(narrow_x, narrow_w)
    with torch.no_grad():
        conv_up2(x, wt)  # nothing to differentiate: oneDNN's forward alone
    assert calls == []
    conv_up2(x, wt)
    assert calls == [1]
