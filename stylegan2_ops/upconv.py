"""The stride-2 transposed 3×3 convolution of StyleGAN2's up-sampling layers.

Reference: ``F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)`` (``weight`` in the
synthesis layer's ``[out, in, 3, 3]`` layout). On CPU, oneDNN computes the weight gradient of
this conv on channels-last maps 2-3× slower than on NCHW ones (512→256 channels at 64², batch
2: 290-310 ms against 110-140 ms), and wide maps are channels-last while training. The fast path
keeps oneDNN's forward and input gradient (a stride-2 conv) and writes the weight gradient as
one GEMM: the nine taps' strided slices of the output gradient gathered side by side, multiplied
by the input's pixels. Same sums in another order: within fp32 rounding of the reference
(about 5e-6 of the gradient's range), so it runs only where it measured faster (``qualifies``)
and ``NADA_OPS=ref`` turns it off. The backward is made of differentiable ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _dispatch
from .conv import cpu_fp32_3x3

# Where the gathered GEMM measured faster than oneDNN's channels-last weight gradient (2-core
# AMD EPYC, ms): 512→256 ch 64² batch 2 109-163 vs 286-312; 256→128 ch 128² 132-140 vs 306-330;
# 512→512 ch 32² 78-80 vs 89-122; 128→128 ch 256² 348 vs 421. Narrow maps (64 channels, batch
# 16, 32²) measured slower (15.6 vs 10.8 ms) and keep oneDNN.
MIN_CHANNELS = 128


def qualifies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fast path is the faster one for this call (by measured size and layout)."""
    return (cpu_fp32_3x3(x, weight) and x.is_contiguous(memory_format=torch.channels_last)
            and min(x.shape[1], weight.shape[0]) >= MIN_CHANNELS)


def reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The transposed conv itself (oneDNN on CPU, cuDNN on CUDA)."""
    return F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)


def conv_up2(x: torch.Tensor, weight: torch.Tensor, impl: str | None = None) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)``: ``[N, I, H, W]`` with an
    ``[O, I, 3, 3]`` weight gives ``[N, O, 2H+1, 2W+1]``."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if needs_grad and _dispatch.mode(impl) != "ref" and qualifies(x, weight):
        return _UpConv.apply(x, weight)
    return reference(x, weight)


def weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The weight gradient ``[O, I, 3, 3]`` of ``conv_up2(x, weight)`` for the output gradient
    ``grad``: output pixel ``(2i+a, 2j+b)`` took ``x[:, :, i, j] · weight[:, :, a, b]``."""
    n, c, h, w = x.shape
    o = grad.shape[1]
    g = grad.permute(0, 2, 3, 1)  # [N, 2H+1, 2W+1, O]: a view for a channels-last gradient
    taps = x.new_empty(n, h, w, o, 3, 3)
    for a in range(3):
        for b in range(3):
            taps[..., a, b] = g[:, a:a + 2 * h:2, b:b + 2 * w:2, :]
    pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view for channels-last x
    return (taps.reshape(n * h * w, o * 9).t() @ pixels).reshape(o, 3, 3, c).permute(0, 3, 1, 2)


class _UpConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return reference(x, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.transpose(0, 1), stride=2)  # the adjoint of the transposed conv
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad(grad, x)
        return grad_x, grad_w
