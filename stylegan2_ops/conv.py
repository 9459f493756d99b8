"""The 3×3 stride-1 convolution of StyleGAN2's synthesis layers, with a Winograd CPU path.

Reference: ``F.conv2d(x, w, padding=1)`` (oneDNN's direct convolution on CPU, which already
runs near the cores' fp32 peak). Plugin: Winograd F(4×4, 3×3) (Lavin & Gray 2016), 2.25
multiplications per output instead of 9: tile transforms in a small C++ extension built with
ninja on first use (``csrc/winograd_cpu.cpp``), the 36 element-wise products as batched GEMMs.
The backward is Winograd too: the input gradient is the same convolution of the output gradient
with the flipped, transposed kernel; the weight gradient multiplies the saved input tiles with
the output gradient's adjoint-transformed tiles. The values match the reference within fp32
rounding of the transforms (about 3e-6 of the output's range against oneDNN's 3e-7), not bit for
bit, so it is used only where it measured faster (``qualifies``) and ``NADA_OPS=ref`` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _dispatch, _plugin

log = logging.getLogger(__name__)

EXT_NAME = "nada_winograd_cpu"
SOURCES = ("winograd_cpu.cpp",)

# Where Winograd measured faster than oneDNN on a 2-core AVX-512 Xeon (docs/speed.md): both
# channel counts at least 128 and at least 256 tiles of 4×4 outputs (batch 2: 512 channels at
# 64², 256 at 128², 128 at 256²). Narrower layers spend the time in the transforms, fewer tiles
# in the weight transforms.
MIN_CHANNELS = 128
MIN_TILES = 256

_state: dict = {"tried": False, "module": None, "error": None, "path": None}


def _cpu_signature() -> str:
    """What ``-march=native`` compiled for: the CPU's feature flags."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_dir() -> Path:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((_plugin.CSRC / name).read_bytes())
    h.update(torch.__version__.encode())
    h.update(_cpu_signature().encode())
    return _plugin.cache_root() / f"{EXT_NAME}_{h.hexdigest()[:16]}"


def build(verbose: bool = False):
    """Compile (or load the cached build of) the CPU extension."""
    final = build_dir()
    module = _plugin.build_cached(
        EXT_NAME, _plugin.CSRC, SOURCES, final, "CPU Winograd kernels",
        extra_cflags=["-O3", "-march=native", "-fopenmp"], verbose=verbose,
    )
    _state["path"] = str(final)
    return module


def get_plugin():
    """The compiled module, or None if it cannot be built (warns once, never retried)."""
    return _plugin.load_once(
        _state, build,
        "Falling back to torch's convolution (correct, slower on wide CPU layers). Fix: install a "
        "C++ compiler (g++) and ninja, or set NADA_OPS=ref.",
    )


def build_state() -> str:
    """One line for ``nada info``."""
    if loaded := _plugin.loaded_state(_state):
        return loaded
    folder = build_dir()
    if _plugin._find_module_file(folder, EXT_NAME):
        return f"built, cached at {folder} (loads on first wide CPU conv)"
    return f"not built yet (builds on first CPU conv with ≥{MIN_CHANNELS} channels and ≥{MIN_TILES} tiles)"


def qualifies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the Winograd path is the faster one for this call (by measured size)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.dim() != 4 or tuple(weight.shape[2:]) != (3, 3) or weight.shape[1] != x.shape[1]:
        return False
    n, c, h, w = x.shape
    tiles = n * ((h + 3) // 4) * ((w + 3) // 4)
    return min(c, weight.shape[0]) >= MIN_CHANNELS and tiles >= MIN_TILES


def uses_winograd(x: torch.Tensor, weight: torch.Tensor, impl: str | None = None) -> bool:
    """Whether ``conv3x3(x, weight, impl)`` runs the Winograd kernels."""
    return _dispatch.mode(impl) != "ref" and qualifies(x, weight) and get_plugin() is not None


def conv3x3(x: torch.Tensor, weight: torch.Tensor, impl: str | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1)``: Winograd on CPU where it is faster, else the reference.
    The Winograd result is channels-last in memory; its backward is not differentiable again."""
    if uses_winograd(x, weight, impl):
        return _Winograd.apply(x, weight)
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
    def forward(ctx, x, weight):
        plugin = get_plugin()
        n, _, h, w = x.shape
        x_nhwc = x.permute(0, 2, 3, 1).contiguous()  # free when x is channels-last already
        tiles = plugin.input_transform(x_nhwc)                        # [36, T, C]
        prods = torch.bmm(tiles, weight_transform(weight).transpose(1, 2))  # [36, T, K]
        ctx.save_for_backward(tiles, weight)
        ctx.hw = (h, w)
        return plugin.output_transform(prods, n, h, w).permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        plugin = get_plugin()
        tiles, weight = ctx.saved_tensors
        (h, w), n = ctx.hw, grad.shape[0]
        g_nhwc = grad.permute(0, 2, 3, 1).contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # conv_transpose with stride 1 = conv with the flipped kernel, in and out swapped:
            # bmm(tiles_g [36,T,K], U_flip [36,K,C]) -> [36,T,C]
            gtiles = plugin.input_transform(g_nhwc)
            grad_x = plugin.output_transform(torch.bmm(gtiles, weight_transform(weight, flip=True)), n, h, w)
            grad_x = grad_x.permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            dprods = plugin.output_transform_adjoint(g_nhwc)           # [36, T, K]
            dU = torch.bmm(dprods.transpose(1, 2), tiles)             # [36, K, C]
            k, c = dU.shape[1:]
            grad_w = torch.mm(_KRON.t(), dU.view(36, k * c)).t().reshape(k, c, 3, 3)
        return grad_x, grad_w
