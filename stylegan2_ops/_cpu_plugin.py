"""The CPU extension (``nada_cpu_ops``): the Winograd convolution of ``conv.py`` and the fused
epilogue of ``epilogue.py``, built with ninja on first use like the CUDA plugin (``_plugin``),
for this machine's CPU (``-march=native``), cached per source, torch version and CPU flags.
A failed build warns once and both ops fall back to their PyTorch references."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import torch

from . import _plugin

EXT_NAME = "nada_cpu_ops"
SOURCES = ("cpu_ops.cpp", "winograd_cpu.cpp", "epilogue_cpu.cpp")

# Both kernels run on layers with at least this many channels, where they measured faster
# (docs/speed.md); narrower maps (the shapes world's 64 px generator) keep the references, bit for bit.
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


def build(verbose: bool = False):
    """Compile (or load the cached build of) the CPU extension."""
    final = build_dir()
    module = _plugin.build_cached(
        EXT_NAME, _plugin.CSRC, SOURCES, final, "CPU kernels",
        extra_cflags=["-O3", "-march=native", "-fopenmp"], verbose=verbose,
    )
    _state["path"] = str(final)
    return module


def get_plugin():
    """The compiled module, or None if it cannot be built (warns once, never retried)."""
    return _plugin.load_once(
        _state, build,
        "Falling back to torch's ops (correct, slower on wide CPU layers). Fix: install a C++ "
        "compiler (g++) and ninja, or set NADA_OPS=ref.",
    )


def build_state() -> str:
    """One line for ``nada info``."""
    if loaded := _plugin.loaded_state(_state):
        return loaded
    folder = build_dir()
    if _plugin._find_module_file(folder, EXT_NAME):
        return f"built, cached at {folder} (Winograd conv, fused epilogue; load on the first wide CPU layer)"
    return f"not built yet (builds on the first CPU layer with ≥{WIDE_CHANNELS} channels)"
