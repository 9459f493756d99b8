"""The epilogue of a demodulated synthesis conv: ``bias_act(y * dcoefs + noise, bias, 'lrelu', clamp)``.

Reference: three passes over ``y`` (leaky ReLU is positively homogeneous, so its √2 gain folds
into the small factors before one ``addcmul``; the noise add and the activation run in place).
On large enough CPU maps the CPU library (``csrc/epilogue_cpu.cpp``) does it in one pass forward
and one backward, where autograd's version makes about a dozen passes over the map (the
leaky ReLU's mask, ``addcmul``'s two products, the noise gain, each reduction). Equal to the
reference within float rounding, not bit for bit; it is used where it measured faster (maps of
at least :data:`MIN_ELEMENTS` values) and ``NADA_OPS=ref`` turns it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _cpu_plugin, _dispatch
from .bias_act import ACTIVATIONS

# The fused pass measured faster from about this many elements per call up (forward and
# backward, 32-512 channels, 16²-1024², NCHW and channels-last; docs/speed.md); on smaller
# maps (a batch of 8² maps) the call's overhead outweighs the passes it saves.
MIN_ELEMENTS = 1 << 18


def conv_epilogue(y: torch.Tensor, dcoefs: torch.Tensor | None, noise: torch.Tensor | None, bias: torch.Tensor,
                  clamp: float | None = None, impl: str | None = None) -> torch.Tensor:
    """``bias_act(y * dcoefs[:, :, None, None] + noise, bias, act='lrelu', clamp=clamp)`` for
    ``y`` ``[N, C, H, W]``, ``dcoefs`` ``[N, C]`` (None: 1), ``noise`` broadcastable to
    ``[N, 1, H, W]`` (None: none)."""
    if _fused_ok(y, dcoefs, noise, clamp, impl):
        return _fused(y, dcoefs, noise, bias)
    return _reference(y, dcoefs, noise, bias, clamp)


def _reference(y, dcoefs, noise, bias, clamp):
    lrelu = ACTIVATIONS["lrelu"]
    b = (bias.to(y.dtype) * lrelu.def_gain).reshape(1, -1, 1, 1)
    if dcoefs is not None:
        out = torch.addcmul(b, y, (dcoefs * lrelu.def_gain).reshape(y.shape[0], -1, 1, 1))
    else:
        out = torch.add(b, y, alpha=lrelu.def_gain)
    if noise is not None:
        out.add_(noise.to(y.dtype), alpha=lrelu.def_gain)
    out = F.leaky_relu_(out, lrelu.def_alpha)
    if clamp is not None and clamp >= 0:
        out = out.clamp(-clamp, clamp)
    return out


def _layout(y: torch.Tensor) -> bool | None:
    """True for channels-last storage, False for NCHW, None for anything else."""
    if y.is_contiguous():
        return False
    return True if y.is_contiguous(memory_format=torch.channels_last) else None


def _fused_ok(y, dcoefs, noise, clamp, impl) -> bool:
    if _dispatch.mode(impl) == "ref" or y.device.type != "cpu" or y.dtype != torch.float32 or y.dim() != 4:
        return False
    if dcoefs is None or (clamp is not None and clamp >= 0) or y.numel() < MIN_ELEMENTS or _layout(y) is None:
        return False
    n, _, h, w = y.shape
    if noise is not None and not (tuple(noise.shape) == (h, w) or (
            noise.dim() == 4 and noise.shape[0] in (1, n) and tuple(noise.shape[1:]) == (1, h, w))):
        return False  # the kernel takes one noise map shared by the batch or one per sample
    return _cpu_plugin.get_plugin() is not None


def _fused(y, dcoefs, noise, bias):
    lrelu = ACTIVATIONS["lrelu"]
    n, _, h, w = y.shape
    z = None if noise is None else (noise.to(y.dtype) * lrelu.def_gain).reshape(-1, h * w)
    return _Epilogue.apply(y, (dcoefs * lrelu.def_gain).contiguous(), (bias.to(y.dtype) * lrelu.def_gain).contiguous(), z)


def _flat(t: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """``[N, C, H, W]`` as the kernel's ``[N, P, C]`` (channels-last) or ``[N, C, P]`` view."""
    n, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(n, h * w, c) if nhwc else t.reshape(n, c, h * w)


def _unflat(t: torch.Tensor, shape, nhwc: bool) -> torch.Tensor:
    n, c, h, w = shape
    return t.view(n, h, w, c).permute(0, 3, 1, 2) if nhwc else t.view(n, c, h, w)


class _Epilogue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, d, b, z):
        nhwc = _layout(y)
        y3 = _flat(y, nhwc)
        out3 = _cpu_plugin.get_plugin().epilogue_forward(y3, d, b, z, ACTIVATIONS["lrelu"].def_alpha, nhwc)
        ctx.save_for_backward(y3, d, out3)
        ctx.meta = (nhwc, tuple(y.shape), 0 if z is None else z.shape[0])
        return _unflat(out3, y.shape, nhwc)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        y3, d, out3 = ctx.saved_tensors
        nhwc, shape, nz = ctx.meta
        g3 = _flat(grad.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format), nhwc)
        gy, gd, gb, gz = _cpu_plugin.get_plugin().epilogue_backward(
            g3, out3, y3, d, nz, ACTIVATIONS["lrelu"].def_alpha, nhwc)
        return _unflat(gy, shape, nhwc), gd, gb, (gz if nz else None)
