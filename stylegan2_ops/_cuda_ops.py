"""autograd wrappers around the compiled kernels (imported only for CUDA tensors).

``upfirdn2d``'s gradient is itself an upfirdn2d (transposed scaling, flipped kernel, adjusted
padding), so higher-order gradients come for free. ``bias_act`` runs its first derivative as a
kernel and falls back to the reference formula when a graph of the gradient is requested
(``create_graph=True``, as R1 regularisation needs).
"""

from __future__ import annotations

import torch

from . import _plugin
from .bias_act import Activation, _bias_act_ref


def _launch_upfirdn(x, g, up, down, pad):
    return _plugin.get_plugin(strict=True).upfirdn2d(x, g, up[0], up[1], down[0], down[1], *pad)


def correlation_kernel(f, flip_filter: bool, gain: float, device, ) -> torch.Tensor:
    """The 2-D float32 kernel the CUDA code correlates with: gain applied, flipped unless
    ``flip_filter``, 1-D filters expanded to their outer product."""
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32)
    f = f.to(device=device, dtype=torch.float32) * (gain ** (f.ndim / 2))
    if f.ndim == 1:
        f = torch.outer(f, f)
    return f if flip_filter else f.flip([0, 1])


def backward_padding(in_h, in_w, out_h, out_w, fh, fw, up, down, pad):
    """Padding of the upfirdn2d that computes the input gradient (up and down swapped)."""
    px0, px1, py0, py1 = pad
    return (
        fw - px0 - 1,
        in_w * up[0] - out_w * down[0] + px0 - up[0] + 1,
        fh - py0 - 1,
        in_h * up[1] - out_h * down[1] + py0 - up[1] + 1,
    )


class UpFirDn2d(torch.autograd.Function):
    launch = staticmethod(_launch_upfirdn)  # replaceable in tests of the autograd wiring

    @staticmethod
    def forward(ctx, x, g, up, down, pad):
        y = UpFirDn2d.launch(x, g, up, down, pad)
        ctx.save_for_backward(g)
        ctx.params = (x.shape, y.shape, up, down, pad)
        return y

    @staticmethod
    def backward(ctx, dy):
        (g,) = ctx.saved_tensors
        x_shape, y_shape, up, down, pad = ctx.params
        dx = None
        if ctx.needs_input_grad[0]:
            fh, fw = g.shape
            p = backward_padding(x_shape[2], x_shape[3], y_shape[2], y_shape[3], fh, fw, up, down, pad)
            dx = UpFirDn2d.apply(dy, g.flip([0, 1]), down, up, p)
        return dx, None, None, None, None


def upfirdn2d_cuda(x, f, up, down, pad, flip_filter, gain):
    g = correlation_kernel(f, flip_filter, gain, x.device)
    return UpFirDn2d.apply(x, g, tuple(up), tuple(down), tuple(pad))


class BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, spec, alpha, gain, clamp):
        plugin = _plugin.get_plugin(strict=True)
        empty = x.new_empty([0])
        y = plugin.bias_act(x, b if b is not None else empty, empty, dim, spec.cuda_code, 0, alpha, gain, clamp)
        ctx.save_for_backward(x, b if b is not None else empty)
        ctx.params = (dim, spec, alpha, gain, clamp, b is not None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim, spec, alpha, gain, clamp, has_b = ctx.params
        if torch.is_grad_enabled():  # create_graph: differentiate the reference formula
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                br = b.detach().requires_grad_(True) if has_b else None
                y = _bias_act_ref(xr, br, dim, spec, alpha, gain, clamp)
                inputs = [xr] + ([br] if has_b else [])
                grads = torch.autograd.grad(y, inputs, dy, create_graph=True)
            dx = grads[0]
            db = grads[1] if has_b else None
        else:
            plugin = _plugin.get_plugin(strict=True)
            dx = plugin.bias_act(x, b, dy, dim, spec.cuda_code, 1, alpha, gain, clamp)
            db = dx.sum([i for i in range(dx.ndim) if i != dim]) if has_b and ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None, None


def bias_act_cuda(x, b, dim, spec: Activation, alpha, gain, clamp):
    return BiasAct.apply(x, b, dim, spec, alpha, gain, clamp)
