"""The CPU extension (``nada_cpu_ops``): the Winograd convolution of ``conv.py`` and the fused
epilogue of ``epilogue.py``, built with ninja on first use like the CUDA plugin (``_plugin``),
for this machine's CPU (``-march=native``), cached per source, torch version and CPU flags.
A failed build warns once and both ops fall back to their PyTorch references.

The kernels are plain C functions over float pointers, called through ``ctypes``; this module
owns every buffer (outputs and the per-thread partial sums). They include only
``ATen/Parallel.h`` (for torch's own thread pool), not the tensor or Python-binding headers:
the build takes a few seconds instead of about 37 s (docs/speed.md)."""

from __future__ import annotations

import ctypes
import hashlib
import platform
from pathlib import Path

import torch

from . import _plugin

EXT_NAME = "nada_cpu_ops"
SOURCES = ("winograd_cpu.cpp", "epilogue_cpu.cpp")

# A layer this wide uses the Winograd conv wherever it has enough tiles; narrower layers only
# on small maps (conv.qualifies). Channels-last storage follows it (nada.networks.generator).
WIDE_CHANNELS = 128

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
        h.update(name.encode())
        h.update((_plugin.CSRC / name).read_bytes())
    h.update(torch.__version__.encode())
    h.update(_cpu_signature().encode())
    return _plugin.cache_root() / f"{EXT_NAME}_{h.hexdigest()[:16]}"


_P = ctypes.c_void_p
_I = ctypes.c_int64
_SIGNATURES = {  # C entry point -> argument types (every one returns int: 0, or -1 for too many threads)
    "nada_conv_forward": [_P, _P, _P, _P, _I, _I, _I, _I, _I],
    "nada_conv_backward": [_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I],
    "nada_epilogue_forward": [_P, _P, _P, _P, _I, _P, _I, _I, _I, ctypes.c_int, ctypes.c_float],
    "nada_epilogue_backward": [_P, _P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, ctypes.c_int, ctypes.c_float],
}


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    """What the C functions assume of an input: contiguous float32 CPU data of this shape."""
    if not (t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() and tuple(t.shape) == shape):
        raise ValueError(f"{what} must be a contiguous float32 CPU tensor of shape {list(shape)}, "
                         f"got {t.dtype} {list(t.shape)} on {t.device}")


class CpuKernels:
    """The compiled library behind a tensor interface (the contract of ``conv.py`` and
    ``epilogue.py``): checks the inputs, allocates the outputs, sums the per-thread partials."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int

    def _call(self, name: str, *args) -> None:
        if getattr(self._lib, name)(*args) != 0:
            raise RuntimeError(f"stylegan2_ops: {name} found more threads than its buffers hold")

    def conv_forward(self, x: torch.Tensor, scale: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        """x [N, H, W, C], scale [N, C] or None, U [36, C, K] -> y [N, H, W, K]."""
        n, h, w, c = x.shape
        k = u.shape[2]
        _check(x, (n, h, w, c), "x")
        _check(u, (36, c, k), "U")
        if scale is not None:
            _check(scale, (n, c), "scale")
        y = x.new_empty((n, h, w, k))
        self._call("nada_conv_forward", _ptr(x), _ptr(scale), _ptr(u), _ptr(y), n, h, w, c, k)
        return y

    def conv_backward(self, x, scale, g, uf, need_x: bool, need_w: bool, need_scale: bool):
        """-> (grad_x [N, H, W, C] or None, dU [36, K, C] or None, grad_scale [N, C] or None)."""
        n, h, w, c = x.shape
        k = g.shape[3]
        _check(x, (n, h, w, c), "x")
        _check(g, (n, h, w, k), "grad")
        _check(uf, (36, k, c), "Uf")
        if scale is not None:
            _check(scale, (n, c), "scale")
        need_scale = need_scale and scale is not None
        threads = torch.get_num_threads()
        gx = x.new_empty((n, h, w, c)) if need_x else None
        du = x.new_zeros((threads, 36, k, c)) if need_w else None
        gs = x.new_zeros((threads, n, c)) if need_scale else None
        self._call("nada_conv_backward", _ptr(x), _ptr(scale), _ptr(g), _ptr(uf), _ptr(gx), _ptr(du), _ptr(gs),
                   threads, n, h, w, c, k)
        return gx, (du.sum(0) if need_w else None), (gs.sum(0) if need_scale else None)

    def epilogue_forward(self, y, d, b, z, alpha: float, nhwc: bool) -> torch.Tensor:
        """y [N, C, P] or [N, P, C], d [N, C], b [C], z [1 or N, P] or None -> out like y."""
        n, c, p = (y.shape[0], y.shape[2], y.shape[1]) if nhwc else tuple(y.shape)
        _check(y, tuple(y.shape), "y")
        _check(d, (n, c), "d")
        _check(b, (c,), "b")
        nz = 0
        if z is not None:
            nz = z.shape[0]
            if nz not in (1, n):
                raise ValueError(f"z must have 1 or {n} rows, got {nz}")
            _check(z, (nz, p), "z")
        out = torch.empty_like(y)
        self._call("nada_epilogue_forward", _ptr(y), _ptr(d), _ptr(b), _ptr(z), nz, _ptr(out), n, c, p, int(nhwc),
                   float(alpha))
        return out

    def epilogue_backward(self, grad, out, y, d, nz: int, alpha: float, nhwc: bool):
        """-> (grad_y like y, grad_d [N, C], grad_b [C], grad_z [nz, P] or None)."""
        n, c, p = (y.shape[0], y.shape[2], y.shape[1]) if nhwc else tuple(y.shape)
        for t, what in ((grad, "grad"), (out, "out"), (y, "y")):
            _check(t, tuple(y.shape), what)
        _check(d, (n, c), "d")
        if nz not in (0, 1, n):
            raise ValueError(f"nz must be 0, 1 or {n}, got {nz}")
        threads = torch.get_num_threads()
        gy = torch.empty_like(y)
        gd = y.new_zeros((threads, n, c))
        gb = y.new_zeros((threads, c))
        gz = y.new_zeros((threads, nz, p)) if nz else None
        self._call("nada_epilogue_backward", _ptr(grad), _ptr(out), _ptr(y), _ptr(d), _ptr(gy), _ptr(gd), _ptr(gb),
                   _ptr(gz), nz, threads, n, c, p, int(nhwc), float(alpha))
        return gy, gd.sum(0), gb.sum(0), (gz.sum(0) if nz else None)


def build(verbose: bool = False) -> CpuKernels:
    """Compile (or load the cached build of) the CPU extension."""
    final = build_dir()
    lib = _plugin.build_cached(
        EXT_NAME, _plugin.CSRC, SOURCES, final, "CPU kernels",
        extra_cflags=["-O3", "-march=native", "-fopenmp"], verbose=verbose,
        is_python_module=False, loader=ctypes.CDLL,
    )
    _state["path"] = str(final)
    return CpuKernels(lib)


def get_plugin():
    """The compiled module, or None if it cannot be built (warns once, never retried)."""
    return _plugin.load_once(
        _state, build,
        "Falling back to torch's ops (correct, slower on CPU synthesis layers). Fix: install a C++ "
        "compiler (g++) and ninja, or set NADA_OPS=ref.",
    )


def build_state() -> str:
    """One line for ``nada info``."""
    if loaded := _plugin.loaded_state(_state):
        return loaded
    folder = build_dir()
    if _plugin._find_module_file(folder, EXT_NAME):
        return f"built, cached at {folder} (Winograd conv, fused epilogue; loads on first use)"
    return "not built yet (builds in seconds on first use by a CPU synthesis layer)"
