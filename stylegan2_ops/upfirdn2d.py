"""upfirdn2d: up-sample by zero insertion, pad, FIR-filter, down-sample.

Conventions are those of NVIDIA's stylegan2-ada-pytorch ops, so filters and paddings mean the
same thing as in the checkpoints users bring:

* ``up``/``down``: int or ``[x, y]``; zero insertion yields ``in * up`` samples per axis.
* ``padding``: int, ``[x, y]`` or ``[x0, x1, y0, y1]``; negative values crop.
* ``f``: 1-D (separable, applied on both axes) or 2-D; it is *convolved* (flipped) unless
  ``flip_filter``; ``gain`` scales it by ``gain ** (f.ndim / 2)``.

The reference path never materialises the zero-inserted tensor and never filters samples that
down-sampling would drop. On CPU, separable filters (1-D, or 2-D rank-1 such as
``setup_filter([1, 3, 3, 1])``) run as per-axis shifted multiply-adds (``_separable``) when they
resample, since PyTorch's strided depthwise convolutions are slow there; plain filtering runs as
one depthwise convolution where that measured faster (NHWC storage, or small NCHW maps);
otherwise up-sampling is one depthwise transposed convolution with stride ``up``,
down-sampling one depthwise convolution with stride ``down``. All paths are exact and
differentiable to any order.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import _dispatch, _separable

# ----------------------------------------------------------------------------------------------
# Argument parsing


def _parse_scaling(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be an int or [x, y], got {value!r}")
    sx, sy = (int(v) for v in value)
    if sx < 1 or sy < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return sx, sy


def _parse_padding(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        padding = [padding, padding]
    if not isinstance(padding, (list, tuple)) or len(padding) not in (2, 4):
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    return tuple(int(p) for p in padding)  # type: ignore[return-value]


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError("f must be a 1-D or 2-D tensor (see setup_filter)")
    return f.shape[-1], f.shape[0]


def setup_filter(
    f,                              # filter taps: list, array or tensor; 0-, 1- or 2-D; None = [1]
    device: torch.device | str | None = None,
    normalize: bool = True,         # scale so the taps sum to 1
    flip_filter: bool = False,      # flip the taps now (so later ops correlate instead)
    gain: float = 1,                # overall gain, applied as gain ** (ndim / 2) per axis
    separable: bool | None = None,  # keep 1-D; None = 1-D and >= 8 taps (NVIDIA's rule)
) -> torch.Tensor:
    """Turn a list of taps into the float32 filter tensor the ops expect."""
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a non-empty scalar, 1-D or 2-D, got shape {list(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("separable=True needs a 1-D filter")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device) if device is not None else f


# ----------------------------------------------------------------------------------------------
# Reference implementation


def _pad_or_crop(x: torch.Tensor, px0: int, px1: int, py0: int, py1: int) -> torch.Tensor:
    """Zero-pad the last two axes; negative amounts crop."""
    if min(px0, px1, py0, py1) < 0:
        h, w = x.shape[2], x.shape[3]
        x = x[:, :, max(-py0, 0): h - max(-py1, 0), max(-px0, 0): w - max(-px1, 0)]
    pads = [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)]
    return F.pad(x, pads) if any(pads) else x


# Filtering without resampling on CPU: oneDNN's depthwise convolution beats the shifted adds on
# NHWC storage at every size measured (fwd+bwd, [1,3,3,1]: 16x32x65² 5.5 vs 15.3 ms, 2x64x513²
# 192 vs 307 ms) and on NCHW up to about 64² (16x32x65² 5.9 vs 11.6 ms; at 129² 125 vs 101 ms).
DWCONV_MAX_NCHW_PIXELS = 66 * 66


def _dwconv_wins(x: torch.Tensor) -> bool:
    return _separable._channels_last(x) or x.shape[2] * x.shape[3] <= DWCONV_MAX_NCHW_PIXELS


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    """Reference path: depthwise (transposed) convolutions, no zero-inserted tensors.

    With ``g`` the correlation kernel (``f`` flipped unless ``flip_filter``) and ``z`` the
    zero-inserted input, upfirdn computes ``y[j] = sum_t g[t] z[j*down + t - p0]`` per axis.
    * up = 1: pad by ``p`` and correlate with stride ``down`` (a strided depthwise conv);
    * up > 1: ``conv_transpose(x, flip(g), stride=up)`` holds ``y`` shifted by ``k - 1 - p0``,
      so pad/crop it by ``[p0 - k + 1, p1 + up - k]`` per axis, then subsample by ``down``.
    """
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = (f * (gain ** (f.ndim / 2))).to(device=x.device, dtype=x.dtype)
    f_taps = f
    if f.ndim == 1:
        f = torch.outer(f, f)
    fh, fw = f.shape
    g = f if flip_filter else f.flip([0, 1])  # correlation kernel
    for size, u, p0, p1, axis in ((w, upx, px0, px1, "width"), (h, upy, py0, py1, "height")):
        if size * u + p0 + p1 - (fw if axis == "width" else fh) < 0:
            raise ValueError(
                f"upfirdn2d output would be empty along {axis}: size {size}, up {u}, padding "
                f"({p0}, {p1}), filter {fw if axis == 'width' else fh} taps"
            )
    filter_only = upx == upy == downx == downy == 1
    if (x.device.type == "cpu" and not (filter_only and _dwconv_wins(x))
            and not f_taps.requires_grad and _separable.supported(up, down)):
        taps = _separable.split_separable(f_taps, 1.0, flip_filter)  # gain is already in f
        if taps is not None:
            return _separable.upfirdn2d_separable(x, taps[0], taps[1], up, down, padding)
    if upx == 1 and upy == 1:
        weight = g[None, None].expand(c, 1, fh, fw)
        if _separable._channels_last(x):  # keep NHWC storage through oneDNN's depthwise conv
            weight = weight.contiguous(memory_format=torch.channels_last)
        if px0 == px1 >= 0 and py0 == py1 >= 0:  # symmetric padding folded into the conv
            if (downx == downy == 1 and px0 < fw and py0 < fh and x.device.type == "cpu"
                    and x.requires_grad and not f_taps.requires_grad):
                return _DepthwiseFilter.apply(x, weight, py0, px0)
            return F.conv2d(x, weight, stride=(downy, downx), padding=(py0, px0), groups=c)
        x = _pad_or_crop(x, px0, px1, py0, py1)
        return F.conv2d(x, weight, stride=(downy, downx), groups=c)
    weight = g.flip([0, 1])[None, None].expand(c, 1, fh, fw)  # conv_transpose flips again
    x = F.conv_transpose2d(x, weight, stride=(upy, upx), groups=c)
    x = _pad_or_crop(x, px0 - fw + 1, px1 + upx - fw, py0 - fh + 1, py1 + upy - fh)
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


class _DepthwiseFilter(torch.autograd.Function):
    """Stride-1 depthwise filtering with symmetric padding, ``conv2d(x, w, padding=(py, px),
    groups=C)``, whose input gradient is computed as the same kind of forward depthwise conv
    (the filter rotated by 180°, padding ``k - 1 - p``) rather than by oneDNN's depthwise
    backward-data pass, which is 2.5-3x slower on CPU ([1,3,3,1] after an up-sampling conv,
    16x32x65² channels-last: 0.85 against 2.15 ms; 2x128x257²: 8.5 against 15.4 ms). The same
    function; its backward is differentiable again."""

    @staticmethod
    def forward(ctx, x, weight, py, px):
        ctx.save_for_backward(weight)
        ctx.pad = (py, px)
        return F.conv2d(x, weight, padding=(py, px), groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        py, px = ctx.pad
        fh, fw = weight.shape[2:]
        gx = F.conv2d(grad, weight.flip([2, 3]), padding=(fh - 1 - py, fw - 1 - px), groups=grad.shape[1])
        return gx, None, None, None


# ----------------------------------------------------------------------------------------------
# Public API


def upfirdn2d(
    x: torch.Tensor,                 # [N, C, H, W]
    f: torch.Tensor | None,          # 1-D or 2-D filter from setup_filter; None = identity
    up=1,                            # int or [x, y] zero-insertion factor
    down=1,                          # int or [x, y] subsampling factor
    padding=0,                       # int, [x, y] or [x0, x1, y0, y1]; negative crops
    flip_filter: bool = False,       # False: convolve (flip taps); True: correlate
    gain: float = 1,                 # filter gain, applied as gain ** (f.ndim / 2)
    impl: str | None = None,         # None = $NADA_OPS; 'ref' or 'cuda'
) -> torch.Tensor:
    """Pad, up-sample, FIR-filter and down-sample a batch of 2-D images."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if f is not None:
        if not isinstance(f, torch.Tensor):
            raise ValueError("f must be a tensor (use setup_filter) or None")
        if f.ndim not in (1, 2) or f.numel() == 0:
            raise ValueError(f"f must be a non-empty 1-D or 2-D filter, got shape {list(f.shape)}")
    up_ = _parse_scaling(up, "up")
    down_ = _parse_scaling(down, "down")
    pad_ = _parse_padding(padding)
    if _dispatch.use_cuda(x, impl, "upfirdn2d"):
        from ._cuda_ops import upfirdn2d_cuda

        return upfirdn2d_cuda(x, f, up_, down_, pad_, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up_, down_, pad_, flip_filter, gain)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl=None):
    """Filter without resampling; output size = input size + padding (same-size for padding 0)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl=None):
    """Up-sample by ``up`` with the FIR filter ``f`` (output = input * up for padding 0)."""
    upx, upy = _parse_scaling(up, "up")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl=None):
    """Down-sample by ``down`` after FIR filtering (output = input / down for padding 0)."""
    downx, downy = _parse_scaling(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
