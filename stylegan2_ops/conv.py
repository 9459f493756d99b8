"""The 3×3 stride-1 convolution of StyleGAN2's synthesis layers, with a Winograd CPU path.

Reference: ``F.conv2d(x * scale, w, padding=1)`` (oneDNN's direct convolution on CPU, which
already runs near the cores' fp32 peak; ``scale`` is the per-sample modulation). Plugin:
Winograd F(4×4, 3×3) (Lavin & Gray 2016), 2.25 multiplications per output instead of 9, in a
small C++ extension built with ninja on first use (``csrc/winograd_cpu.cpp``): the tiles run in
blocks whose input transform (with the modulation folded in), 36 GEMMs (MKL's sgemm) and output
transform stay in cache. The backward is Winograd too: the input gradient is the same
convolution of the output gradient with the flipped, transposed kernel (and the modulation's
gradient is summed as it is written); the weight gradient multiplies the recomputed input tiles
with the output gradient's adjoint-transformed tiles. The values match the reference within fp32
rounding of the transforms (about 3e-6 of the output's range against oneDNN's 3e-7), not bit for
bit, so it is used only where it measured faster (``qualifies``) and ``NADA_OPS=ref`` turns it off."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _cpu_plugin, _dispatch

# Where Winograd measured faster than oneDNN (docs/speed.md), forward and forward+backward:
# - both channel counts at least 128 and at least 256 tiles of 4×4 outputs (2-core AVX-512
#   Xeon, batch 2: 512 channels at 64², 256 at 128², 128 at 256²);
# - narrow layers (32-127 channels) on maps up to 64², at least 256 tiles (2-core AMD EPYC,
#   forward / forward+backward against oneDNN: 64 channels 32² batch 16 0.5-0.8 / 0.5-0.7,
#   16² 0.5 / 0.96, 32 channels 64² 0.95 / 0.76). Larger narrow maps (config-f's 512² and
#   1024²) stay with oneDNN: there it measured 0.75-1.44 with no clear winner.
# Fewer channels or tiles spend the time in the transforms.
MIN_CHANNELS = _cpu_plugin.WIDE_CHANNELS
NARROW_MIN_CHANNELS = 32
NARROW_MAX_PIXELS = 64 * 64
MIN_TILES = 256


def cpu_fp32_3x3(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """A CPU float32 ``[N, C, H, W]`` map and a ``[K, C, 3, 3]`` weight: what the CPU paths take."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    return x.dim() == 4 and tuple(weight.shape[2:]) == (3, 3) and weight.shape[1] == x.shape[1]


def qualifies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the Winograd path is the faster one for this call (by measured size)."""
    if not cpu_fp32_3x3(x, weight):
        return False
    n, c, h, w = x.shape
    tiles = n * ((h + 3) // 4) * ((w + 3) // 4)
    channels = min(c, weight.shape[0])
    if tiles < MIN_TILES:
        return False
    return channels >= MIN_CHANNELS or (channels >= NARROW_MIN_CHANNELS and h * w <= NARROW_MAX_PIXELS)


def uses_winograd(x: torch.Tensor, weight: torch.Tensor, impl: str | None = None) -> bool:
    """Whether ``conv3x3(x, weight, impl)`` runs the Winograd kernels."""
    return _dispatch.mode(impl) != "ref" and qualifies(x, weight) and _cpu_plugin.get_plugin() is not None


def conv3x3(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None = None,
            impl: str | None = None) -> torch.Tensor:
    """``F.conv2d(x * scale[:, :, None, None], weight, padding=1)`` (``scale``: ``[N, C]``, the
    per-sample modulation; None: 1): Winograd on CPU where it is faster, else the reference.
    The Winograd result is channels-last in memory; its backward is not differentiable again."""
    if uses_winograd(x, weight, impl):
        if scale is not None:
            scale = scale.to(x.dtype).contiguous()
        return _Winograd.apply(x, weight, scale)
    if scale is not None:
        x = x * scale.reshape(x.shape[0], -1, 1, 1)
    return F.conv2d(x, weight, padding=1)


# Winograd F(4×4, 3×3) weight transform G (6×3); U = G g Gᵀ for each 3×3 kernel g.
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
_KRON = torch.kron(_G, _G).float()                    # [36, 9]: vec(G g Gᵀ) = (G ⊗ G) vec(g)
_KRON_FLIP = torch.kron(_G.flip(1), _G.flip(1)).float()  # the same for the kernel rotated by 180°


def weight_transform(weight: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """``[K, C, 3, 3] -> [36, K, C]``: each kernel (rotated by 180° if ``flip``) in the Winograd domain."""
    k, c = weight.shape[:2]
    flat = weight.reshape(k * c, 9).t().contiguous()  # [9, K*C]: one long GEMM operand
    return torch.mm(_KRON_FLIP if flip else _KRON, flat).view(36, k, c)


class _Winograd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, scale=None):
        x_nhwc = x.permute(0, 2, 3, 1).contiguous()  # free when x is channels-last already
        u = weight_transform(weight.transpose(0, 1))  # [36, C, K]
        y = _cpu_plugin.get_plugin().conv_forward(x_nhwc, scale, u)
        ctx.save_for_backward(x_nhwc, weight, scale)
        return y.permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x_nhwc, weight, scale = ctx.saved_tensors
        need_x, need_w, need_s = (tuple(ctx.needs_input_grad) + (False,))[:3]
        g_nhwc = grad.permute(0, 2, 3, 1).contiguous()
        # the input gradient is the conv of grad with the kernel rotated by 180°, in and out
        # swapped: [36, K, C]; the weight gradient comes back in the Winograd domain, [36, K, C]
        uf = weight_transform(weight, flip=True)
        gx, du, gs = _cpu_plugin.get_plugin().conv_backward(x_nhwc, scale, g_nhwc, uf, need_x, need_w, need_s)
        grad_w = None
        if need_w:
            k, c = du.shape[1:]
            grad_w = torch.mm(_KRON.t(), du.view(36, k * c)).t().reshape(k, c, 3, 3)
        grads = (gx.permute(0, 3, 1, 2) if need_x else None), grad_w, (gs if need_s else None)
        return grads[:len(ctx.needs_input_grad)]  # apply(x, weight) takes no scale
