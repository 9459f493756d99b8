"""stylegan2_ops reference paths against an independent naive formulation, gradients, and
argument validation."""

import itertools
import math
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

import stylegan2_ops as ops
from stylegan2_ops import _cuda_ops
from stylegan2_ops.upfirdn2d import _upfirdn2d_ref

# ------------------------------------------------------------------------------------------
# The naive formulation: explicit zero insertion, F.pad (crop for negatives), a full 2-D
# depthwise convolution with the flipped filter, then slicing.


def naive_upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    if isinstance(padding, int):
        padding = [padding] * 4
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    z = torch.zeros(n, c, h * upy, w * upx, dtype=x.dtype)
    z[:, :, ::upy, ::upx] = x
    z = F.pad(z, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    z = z[:, :, max(-py0, 0): z.shape[2] - max(-py1, 0), max(-px0, 0): z.shape[3] - max(-px1, 0)]
    f = f.to(x.dtype)
    if f.ndim == 1:
        f2 = torch.outer(f, f) * gain
    else:
        f2 = f * gain
    if not flip_filter:
        f2 = f2.flip([0, 1])
    out = F.conv2d(z, f2[None, None].repeat(c, 1, 1, 1), groups=c)
    return out[:, :, ::downy, ::downx]


def _grid():
    filters = {
        "binomial4": torch.tensor([1.0, 3, 3, 1], dtype=torch.float64),
        "taps3": torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64),
        "one": torch.tensor([2.0], dtype=torch.float64),
        "rand2d_3x5": torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)),
        "rank1_4x4": torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])).double(),
    }
    ups = [1, 2, [2, 1], 3]
    downs = [1, 2, [1, 2]]
    pads = [0, 1, [2, 1], [1, 2, 0, 3], [-1, 2, 3, -2]]
    for (fname, f), up, down, pad, flip, gain in itertools.product(
        filters.items(), ups, downs, pads, [False, True], [1, 2.0]
    ):
        yield fname, f, up, down, pad, flip, gain


def test_upfirdn2d_matches_naive_formulation_float64():
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for fname, f, up, down, pad, flip, gain in _grid():
        x = torch.randn(2, 3, 7, 5, dtype=torch.float64, generator=gen)  # non-square
        try:
            want = naive_upfirdn2d(x, f, up, down, pad, flip, gain)
        except RuntimeError:
            continue  # configuration with empty output
        if want.numel() == 0:
            continue
        got = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain)
        assert got.shape == want.shape, (fname, up, down, pad)
        assert (got - want).abs().max().item() < 1e-10, (fname, up, down, pad, flip, gain)
        checked += 1
    assert checked > 500


def test_helpers_keep_sizes_and_match_naive():
    f = ops.setup_filter([1, 3, 3, 1], device=torch.device("cpu"))
    assert f.shape == (4, 4) and math.isclose(float(f.sum()), 1.0)
    x = torch.randn(2, 4, 8, 6, dtype=torch.float64)
    assert ops.upsample2d(x, f).shape == (2, 4, 16, 12)
    assert ops.downsample2d(x, f).shape == (2, 4, 4, 3)
    assert ops.filter2d(x, f).shape == x.shape
    # upsample2d == upfirdn2d with NVIDIA's padding arithmetic and gain up*up
    want = naive_upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4)
    assert torch.allclose(ops.upsample2d(x, f), want, atol=1e-12)
    want = naive_upfirdn2d(x, f, down=2, padding=[1, 1, 1, 1])
    assert torch.allclose(ops.downsample2d(x, f), want, atol=1e-12)
    want = naive_upfirdn2d(x, f, padding=[2, 1, 2, 1])
    assert torch.allclose(ops.filter2d(x, f), want, atol=1e-12)


def test_setup_filter_conventions():
    f = ops.setup_filter([1, 2, 1])
    assert f.ndim == 2 and torch.allclose(f, torch.outer(torch.tensor([1.0, 2, 1]), torch.tensor([1.0, 2, 1])) / 16)
    f8 = ops.setup_filter(list(range(1, 9)))
    assert f8.ndim == 1  # >= 8 taps stays separable
    fg = ops.setup_filter([1, 1], gain=4, normalize=False)
    assert torch.allclose(fg, torch.full((2, 2), 4.0))
    ff = ops.setup_filter([1, 2], flip_filter=True, normalize=False, separable=True)
    assert ff.tolist() == [2.0, 1.0]


def naive_bias_act(x, b, dim, act, alpha, gain, clamp):
    shape = [1] * x.ndim
    shape[dim] = -1
    v = x + b.reshape(shape)
    a = 0.2 if alpha is None else alpha
    table = {
        "linear": (lambda t: t, 1.0),
        "relu": (lambda t: torch.where(t > 0, t, torch.zeros_like(t)), math.sqrt(2)),
        "lrelu": (lambda t: torch.where(t > 0, t, a * t), math.sqrt(2)),
        "tanh": (lambda t: (torch.exp(t) - torch.exp(-t)) / (torch.exp(t) + torch.exp(-t)), 1.0),
        "sigmoid": (lambda t: 1 / (1 + torch.exp(-t)), 1.0),
        "elu": (lambda t: torch.where(t > 0, t, torch.exp(t) - 1), 1.0),
        "selu": (lambda t: 1.0507009873554805 * torch.where(t > 0, t, 1.6732632423543772 * (torch.exp(t) - 1)), 1.0),
        "softplus": (lambda t: torch.log(1 + torch.exp(t)), 1.0),
        "swish": (lambda t: t / (1 + torch.exp(-t)), math.sqrt(2)),
    }
    fn, def_gain = table[act]
    y = fn(v) * (def_gain if gain is None else gain)
    if clamp is not None:
        y = torch.minimum(torch.maximum(y, torch.tensor(-clamp, dtype=y.dtype)), torch.tensor(clamp, dtype=y.dtype))
    return y


@pytest.mark.parametrize("act", sorted(ops.ACTIVATIONS))
def test_bias_act_matches_explicit_formula(act):
    gen = torch.Generator().manual_seed(3)
    for dim, alpha, gain, clamp in [(1, None, None, None), (2, 0.1, 1.5, 0.7), (0, None, 2.0, 256.0)]:
        x = torch.randn(3, 4, 5, dtype=torch.float64, generator=gen)
        b = torch.randn(x.shape[dim], dtype=torch.float64, generator=gen)
        got = ops.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        want = naive_bias_act(x, b, dim, act, alpha if act == "lrelu" else None, gain, clamp)
        assert (got - want).abs().max().item() < 1e-10


def test_lrelu_defaults():
    x = torch.tensor([[-1.0, 2.0]], dtype=torch.float64)
    y = ops.bias_act(x, act="lrelu")
    assert torch.allclose(y, torch.tensor([[-0.2, 2.0]], dtype=torch.float64) * math.sqrt(2))


# ------------------------------------------------------------------------------------------
# Gradients (R1 regularisation differentiates through the ops twice)


@pytest.mark.parametrize("up,down,pad", [(1, 1, 1), (2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 0, 2]), ([2, 1], [1, 2], [-1, 2, 1, 0])])
@pytest.mark.parametrize("kind", ["separable", "full2d"])
def test_upfirdn2d_gradcheck_and_gradgradcheck(up, down, pad, kind):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    if kind == "separable":  # CPU shifted-add path
        f = torch.tensor([1.0, 3, 2], dtype=torch.float64)
    else:  # depthwise-convolution path
        f = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    fn = lambda t: ops.upfirdn2d(t, f, up=up, down=down, padding=pad)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("act", ["lrelu", "tanh", "softplus", "swish", "elu"])
def test_bias_act_gradcheck_and_gradgradcheck(act):
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda t, c: ops.bias_act(t, c, act=act, clamp=3.0)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_cuda_autograd_wiring_with_a_reference_kernel(monkeypatch):
    """The CUDA path's backward (an upfirdn2d with swapped scaling and flipped kernel) is
    checked on CPU by standing a reference correlation in for the kernel launch."""

    def launch(x, g, up, down, pad):
        return _upfirdn2d_ref(x, g, up, down, pad, True, 1)

    monkeypatch.setattr(_cuda_ops.UpFirDn2d, "launch", staticmethod(launch))
    gen = torch.Generator().manual_seed(5)
    f = torch.tensor([1.0, 3, 3, 1], dtype=torch.float32)
    for up, down, pad, flip in [((2, 2), (1, 1), (2, 1, 2, 1), False), ((1, 1), (2, 2), (1, 2, 0, 1), True), ((2, 1), (1, 2), (0, 3, -1, 2), False)]:
        x = torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=gen, requires_grad=True)
        g = _cuda_ops.correlation_kernel(f, flip, 4.0, x.device).double()  # taps exact in float32
        y = _cuda_ops.UpFirDn2d.apply(x, g, up, down, pad)
        want = ops.upfirdn2d(x, f.double(), up=list(up), down=list(down), padding=list(pad), flip_filter=flip, gain=4.0)
        assert torch.allclose(y, want, atol=1e-10)
        dy = torch.randn(y.shape, dtype=torch.float64, generator=gen)
        (gx,) = torch.autograd.grad(y, x, dy)
        (gw,) = torch.autograd.grad(want, x, dy)
        assert torch.allclose(gx, gw, atol=1e-10)
        if up == (2, 1):  # second order through the custom Function (one case: gradgradcheck is slow)
            fn = lambda t: _cuda_ops.UpFirDn2d.apply(t, g, up, down, pad)
            assert torch.autograd.gradgradcheck(fn, (x[:1, :1, :4, :5].detach().requires_grad_(True),))


# ------------------------------------------------------------------------------------------
# Argument validation


@pytest.mark.parametrize(
    "call,word",
    [
        (lambda: ops.upfirdn2d(torch.zeros(3, 4, 4), torch.ones(2)), "x"),
        (lambda: ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2, 2)), "f"),
        (lambda: ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2), up=0), "up"),
        (lambda: ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2), down=[1, 0]), "down"),
        (lambda: ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2), padding=[1, 2, 3]), "padding"),
        (lambda: ops.upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(2), padding=-2), "empty"),
        (lambda: ops.bias_act(torch.zeros(2, 3), act="gelu2"), "act"),
        (lambda: ops.bias_act(torch.zeros(2, 3), torch.zeros(4)), "b"),
        (lambda: ops.bias_act(torch.zeros(2, 3), dim=4), "dim"),
        (lambda: ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2), impl="fast"), "NADA_OPS"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_import_compiles_nothing(tmp_path):
    code = (
        "import sys, stylegan2_ops, torch\n"
        "x = torch.randn(1, 2, 8, 8)\n"
        "stylegan2_ops.upsample2d(x, stylegan2_ops.setup_filter([1, 3, 3, 1]))\n"
        "stylegan2_ops.bias_act(x, act='lrelu')\n"
        "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension imported'\n"
        "assert not any(m.startswith('nada_stylegan2_ops') for m in sys.modules)\n"
        "print('clean')\n"
    )
    env = {"TORCH_EXTENSIONS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "clean" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_env_selects_reference(monkeypatch):
    from stylegan2_ops import _dispatch

    monkeypatch.setenv("NADA_OPS", "ref")
    assert _dispatch.mode() == "ref"
    monkeypatch.setenv("NADA_OPS", "bogus")
    with pytest.raises(ValueError, match="NADA_OPS"):
        _dispatch.mode()


def test_status_report_lines():
    rows = dict(ops.status_report())
    assert rows["ops mode (NADA_OPS)"] in ("auto", "cuda", "ref")
    assert "CUDA ops" in rows


def test_separable_fast_path_is_taken_and_agrees_with_the_convolution_path(monkeypatch):
    """setup_filter([1,3,3,1]) is 2-D rank-1: the CPU path must split it when it resamples, and
    match conv exactly."""
    from stylegan2_ops import _separable

    f = ops.setup_filter([1, 3, 3, 1]).double()
    assert f.ndim == 2 and _separable.split_separable(f, 1.0, False) is not None
    assert _separable.split_separable(torch.randn(3, 3, dtype=torch.float64), 1.0, False) is None
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    calls = []
    real = _separable.upfirdn2d_separable
    monkeypatch.setattr(_separable, "upfirdn2d_separable", lambda *a: calls.append(1) or real(*a))
    cases = [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1), dict(padding=[1, 1, 1, 1], gain=4)]
    for kw in cases:
        fast = ops.upfirdn2d(x, f, **kw)
        monkeypatch.setattr(_separable, "supported", lambda up, down: False)
        slow = ops.upfirdn2d(x, f, **kw)
        monkeypatch.undo()
        monkeypatch.setattr(_separable, "upfirdn2d_separable", lambda *a: calls.append(1) or real(*a))
        assert (fast - slow).abs().max().item() < 1e-12, kw
    # plain filtering of a small map is one depthwise convolution (faster there), not shifted adds
    assert len(calls) == len(cases) - 1


@pytest.mark.parametrize("kw", [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1),
                                dict(padding=[1, 2, 0, 3])])
def test_separable_path_on_channels_last_storage_matches_the_naive_formulation(kw):
    """NHWC input runs the NHWC plan, stays NHWC, and agrees with the naive op, gradients too."""
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(3, 5, 9, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = ops.upfirdn2d(x, f, **kw)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    want = naive_upfirdn2d(x.detach(), f, **kw)
    assert (y - want).abs().max().item() < 1e-12
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    x2 = x.detach().contiguous().requires_grad_()
    (gx2,) = torch.autograd.grad(ops.upfirdn2d(x2, f, **kw), x2, g.contiguous())
    assert (gx - gx2).abs().max().item() < 1e-12


def test_auto_mode_picks_kernels_per_op(monkeypatch):
    """On a CUDA tensor, auto runs the bias_act kernel but the reference upfirdn2d (measured faster
    on GPU); NADA_OPS=cuda forces both; CPU tensors never take a kernel. (No GPU needed: the
    dispatcher only reads the tensor's device, the plugin and the cached self-check.)"""
    from types import SimpleNamespace

    from stylegan2_ops import _dispatch, _plugin

    monkeypatch.setattr(_plugin, "get_plugin", lambda strict=False: object())
    monkeypatch.setattr(_dispatch, "selfcheck_results", {0: (True, "ok")})
    gpu = SimpleNamespace(device=torch.device("cuda", 0))
    monkeypatch.setenv("NADA_OPS", "auto")
    assert _dispatch.use_cuda(gpu, None, "bias_act")
    assert not _dispatch.use_cuda(gpu, None, "upfirdn2d")
    assert not _dispatch.use_cuda(torch.zeros(1), None, "bias_act")
    monkeypatch.setattr(_dispatch, "selfcheck_results", {0: (False, "mismatch")})
    assert not _dispatch.use_cuda(gpu, None, "bias_act")  # a failed self-check disables kernels
    monkeypatch.setenv("NADA_OPS", "cuda")
    assert _dispatch.use_cuda(gpu, None, "upfirdn2d") and _dispatch.use_cuda(gpu, None, "bias_act")
    assert not _dispatch.use_cuda(gpu, "ref", "bias_act")


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_plain_filtering_backward_as_a_forward_depthwise_conv(layout, monkeypatch):
    """Stride-1 filtering with symmetric padding (the FIR after each up-sampling conv) takes
    ``_DepthwiseFilter``, whose input gradient is a forward depthwise conv with the rotated
    filter: values and gradients equal the plain depthwise conv's (float64), layouts kept."""
    import importlib

    U = importlib.import_module("stylegan2_ops.upfirdn2d")  # the module, not the function it exports

    calls = []
    orig = U._DepthwiseFilter.apply
    monkeypatch.setattr(U._DepthwiseFilter, "apply", lambda *a: calls.append(1) or orig(*a))
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    f = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))  # fh 4, fw 3
    y = ops.upfirdn2d(x, f, padding=[1, 1, 2, 2])
    assert calls, "the custom backward was not used"
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    w = f.flip([0, 1])[None, None].expand(3, 1, 4, 3)
    x2 = x.detach().requires_grad_(True)
    y2 = F.conv2d(x2, w, padding=(2, 1), groups=3)
    (gx2,) = torch.autograd.grad(y2, x2, g)
    assert torch.allclose(y, y2, atol=1e-12) and torch.allclose(gx, gx2, atol=1e-12)
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
