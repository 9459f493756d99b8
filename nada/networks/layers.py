"""StyleGAN2 building blocks on ``stylegan2_ops``: equalised-lr linear layers, modulated
convolutions with demodulation and noise injection, and ToRGB.

Parameter names and shapes follow NVIDIA's stylegan2-ada-pytorch generator (``weight``,
``bias``, ``affine``, ``noise_const``, ``noise_strength``), so NVIDIA state dicts load without
renaming; the arithmetic follows the published StyleGAN2 equations.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

import stylegan2_ops

NOISE_MODES = ("random", "const", "none")


def assert_shape(x: torch.Tensor, shape: list[int | None], what: str) -> None:
    """Check a tensor entering a module; ``None`` entries match any size."""
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{what}: expected shape {want}, got {list(x.shape)}")


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm: scale each vector to unit root-mean-square."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: weights stored as N(0, 1/lr_mul) and scaled
    by ``lr_mul / sqrt(in_features)`` at run time; bias scaled by ``lr_mul``."""

    def __init__(
        self,
        in_features: int,           # input size
        out_features: int,          # output size
        activation: str = "linear", # 'linear' or 'lrelu' (with gain sqrt 2)
        lr_multiplier: float = 1.0, # equalised learning-rate multiplier
        bias_init: float = 0.0,     # initial bias value (1 for style affines)
    ):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return stylegan2_ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, act={self.activation}"


def modulated_conv2d(
    x: torch.Tensor,                        # [N, I, H, W] activations
    weight: torch.Tensor,                   # [O, I, k, k] shared weight
    styles: torch.Tensor,                   # [N, I] per-sample modulation
    demodulate: bool = True,                # normalise each output channel to unit expected std
    up: int = 1,                            # 1 or 2: up-sample by a transposed conv + FIR filter
    resample_filter: torch.Tensor | None = None,  # from stylegan2_ops.setup_filter, needed if up=2
    noise: torch.Tensor | None = None,      # added after the (de)modulated conv
    fused: bool | None = None,              # grouped conv with per-sample weights; None = auto
) -> torch.Tensor:
    """StyleGAN2's modulated convolution (Karras et al. 2020, eqs. 1-3).

    ``fused=False`` scales activations before and after one shared convolution (fast for
    batches on CPU; a 1x1 conv on a large CPU map is batched matmuls instead); ``fused=True`` builds
    per-sample weights and runs a grouped convolution. All compute the same function.
    """
    x, dcoefs = _modulated_conv2d_raw(x, weight, styles, demodulate, up, resample_filter, fused)
    if dcoefs is not None:
        x = x * dcoefs.reshape(x.shape[0], -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _modulated_conv2d_raw(x, weight, styles, demodulate, up, resample_filter, fused):
    """The modulated conv (and FIR up-sampling) with the demodulation left to the caller:
    ``(y, dcoefs)`` where the result is ``y * dcoefs[:, :, None, None]`` (``dcoefs`` is None
    when there is none to apply: no demodulation, or the fused path folded it into the weights).
    The FIR filter is linear per channel, so demodulating after it is the same function; a
    caller can then fold ``dcoefs`` into its own epilogue (one pass over the output)."""
    n, in_ch = x.shape[0], x.shape[1]
    out_ch, _, kh, kw = weight.shape
    assert_shape(styles, [n, in_ch], "styles")
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    dcoefs = None
    if demodulate:
        # sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 sum_k w[o,i,k]^2: a matmul instead of
        # materialising the [N, O, I, k, k] per-sample weights.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
    if fused is None:
        # One sample: per-sample weights cost nothing extra, except where the CPU Winograd
        # kernel (one weight for the batch, the modulation folded in) would run the conv:
        # 256², batch 1, forward+backward 2.4 s unfused against 3.7 s fused (docs/speed.md).
        # A large 1x1 conv on CPU takes the batched matmul below (per-sample weights anyway).
        fused = n == 1 and not (up == 1 and kh == 3 and stylegan2_ops.conv.uses_winograd(x, weight))
        fused = fused and not _takes_pointwise(x, kh, kw, up)
    pad = kh // 2

    if not fused and _takes_pointwise(x, kh, kw, up):
        return _pointwise_modulated(x, weight, styles), dcoefs
    if fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
        if dcoefs is not None:
            w = w * dcoefs.reshape(n, -1, 1, 1, 1)
        x = x.reshape(1, n * in_ch, *x.shape[2:])
        if up == 1:
            x = F.conv2d(x, w.reshape(n * out_ch, in_ch, kh, kw), padding=pad, groups=n)
        else:
            wt = w.transpose(1, 2).reshape(n * in_ch, out_ch, kh, kw)
            x = F.conv_transpose2d(x, wt, stride=up, groups=n)
        x = x.reshape(n, out_ch, *x.shape[2:])
        dcoefs = None
    elif up == 1 and kh == 3:
        x = stylegan2_ops.conv3x3(x, weight, scale=styles)  # the modulation folds into its kernels
    else:
        x = x * styles.reshape(n, -1, 1, 1)
        if up == 1:
            x = F.conv2d(x, weight, padding=pad)
        elif up == 2 and kh == 3:
            x = stylegan2_ops.conv_up2(x, weight)
        else:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up)

    if up != 1:
        # The transposed conv gives (H-1)*up + k pixels; the FIR filter (gain up^2 keeps the
        # signal level) trims them back to H*up, matching NVIDIA's conv2d_resample padding.
        fw = resample_filter.shape[-1]
        p0 = pad + (fw + up - 1) // 2 - (kw - 1)
        p1 = pad + (fw - up) // 2 - (kw - up)
        x = stylegan2_ops.upfirdn2d(x, resample_filter.float(), padding=[p0, p1, p0, p1], gain=up**2)
    return x, dcoefs


# Maps from 128² take the batched-matmul ToRGB on CPU. It is faster at every measured size, but
# smaller maps keep the scale-and-conv path so the shipped 64 px generator trains on the numerics
# its recipe was tuned with (the change moves trajectories at float rounding; docs/speed.md).
POINTWISE_MIN_PIXELS = 128 * 128


def _takes_pointwise(x: torch.Tensor, kh: int, kw: int, up: int) -> bool:
    return (kh == kw == 1 and up == 1 and x.device.type == "cpu"
            and x.shape[2] * x.shape[3] >= POINTWISE_MIN_PIXELS)


def _pointwise_modulated(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """A modulated 1x1 conv (ToRGB) as batched matmuls with per-sample weights ``W * s``: the
    same sums, without scaling the whole input map first (docs/speed.md)."""
    n, c = x.shape[:2]
    wp = weight.reshape(1, weight.shape[0], c) * styles.reshape(n, 1, c)  # [N, O, I]
    return _PointwiseConv.apply(x, wp)


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _as_tokens(x: torch.Tensor) -> torch.Tensor:
    """A channels-last [N, C, H, W] map as a [N, H*W, C] view of its storage."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


class _PointwiseConv(torch.autograd.Function):
    """``y[n] = wp[n] @ x[n]`` over pixels, in the input's layout (NCHW or channels-last). Each
    product is written in the orientation MKL runs fast: autograd's own backward of the
    channels-last product reduces over pixels with a 3-column output, 4-10x slower than the same
    sum written as [N, O, HW] @ [N, HW, C]. The backward is made of differentiable ops, so
    second derivatives (path-length regularisation) work."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, wp: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, wp)
        n, c, h, w = x.shape
        if _channels_last(x):
            return torch.bmm(_as_tokens(x), wp.transpose(1, 2)).reshape(n, h, w, -1).permute(0, 3, 1, 2)
        return torch.bmm(wp, x.reshape(n, c, h * w)).reshape(n, -1, h, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, wp = ctx.saved_tensors
        n, c, h, w = x.shape
        gt = _as_tokens(grad) if _channels_last(grad) else grad.reshape(n, -1, h * w).transpose(1, 2)  # [N, HW, O]
        grad_x = grad_wp = None
        if _channels_last(x):
            tokens = _as_tokens(x)
            if ctx.needs_input_grad[1]:
                grad_wp = torch.bmm(gt.transpose(1, 2), tokens)
            if ctx.needs_input_grad[0]:
                grad_x = torch.bmm(gt, wp).reshape(n, h, w, c).permute(0, 3, 1, 2)
        else:
            flat = x.reshape(n, c, h * w)
            if ctx.needs_input_grad[1]:
                grad_wp = torch.bmm(gt.transpose(1, 2), flat.transpose(1, 2))
            if ctx.needs_input_grad[0]:
                grad_x = torch.bmm(wp.transpose(1, 2), gt.transpose(1, 2)).reshape(n, c, h, w)
        return grad_x, grad_wp


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up-sampling) + noise + bias + lrelu."""

    def __init__(
        self,
        in_channels: int,               # input feature channels
        out_channels: int,              # output feature channels
        w_dim: int,                     # style vector size
        resolution: int,                # output resolution of this layer
        up: int = 1,                    # 2 for the first conv of a block
        use_noise: bool = True,         # per-pixel noise injection
        resample_filter: tuple[int, ...] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", stylegan2_ops.setup_filter(list(resample_filter)), persistent=False)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self,
        x: torch.Tensor,                        # [N, I, res/up, res/up]
        w: torch.Tensor,                        # [N, w_dim]
        noise_mode: str = "const",              # random | const | none
        noise: torch.Tensor | None = None,      # [N or 1, 1, res, res] unit-variance noise
        generator: torch.Generator | None = None,  # for noise_mode='random'
    ) -> torch.Tensor:
        in_res = self.resolution // self.up
        assert_shape(x, [None, self.weight.shape[1], in_res, in_res], "SynthesisLayer input")
        styles = self.affine(w)
        scaled = None
        if self.use_noise:
            if noise is None and noise_mode == "random":
                noise = _randn([x.shape[0], 1, self.resolution, self.resolution], generator, x)
            elif noise is None and noise_mode == "const":
                noise = self.noise_const
            if noise is not None:
                scaled = noise.to(x.dtype) * self.noise_strength.to(x.dtype)
        if stylegan2_ops.uses_kernel(x, "bias_act"):  # the CUDA kernel fuses the epilogue itself
            x = modulated_conv2d(
                x, self.weight, styles, up=self.up, resample_filter=self.resample_filter, noise=scaled
            )
            return stylegan2_ops.bias_act(x, self.bias.to(x.dtype), act="lrelu", clamp=self.conv_clamp)
        y, dcoefs = _modulated_conv2d_raw(x, self.weight, styles, True, self.up, self.resample_filter, None)
        return stylegan2_ops.conv_epilogue(y, dcoefs, scaled, self.bias, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB, no demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return stylegan2_ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


def _randn(shape: list[int], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn from ``generator`` (on its own device), moved next to ``like``."""
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    out = torch.randn(shape, generator=generator, device=generator.device)
    return out.to(device=like.device, dtype=like.dtype)
