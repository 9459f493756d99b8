"""Choosing between the CUDA kernels and the reference path.

``NADA_OPS=auto|cuda|ref`` (default ``auto``): in auto mode CUDA tensors use an op's kernel
when the op is in ``AUTO_KERNELS`` and the kernels build and pass a self-check on their device;
everything else uses the reference. ``cuda`` forces the kernels of every op. The decision is
made per call from cached state: a failed build or self-check is recorded once and never
retried in the same process.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

log = logging.getLogger(__name__)

MODES = ("auto", "cuda", "ref")

# Ops whose kernel auto mode prefers on CUDA tensors. upfirdn2d is left out: on an H200 its
# kernel (one thread per output sample, no tiling) was 1.5-3.0x slower than the reference path's
# cuDNN strided/transposed convolutions on StyleGAN2's feature maps (README, scripts/bench_ops.py
# --cuda-only); NADA_OPS=cuda still runs it.
AUTO_KERNELS = frozenset({"bias_act"})

# device index -> (passed: bool, detail: str), filled by the self-check on first use
selfcheck_results: dict[int, tuple[bool, str]] = {}
_in_selfcheck = False


def mode(impl: str | None = None) -> str:
    """The requested implementation: ``impl`` if given, else ``$NADA_OPS``, else auto."""
    value = impl if impl is not None else os.environ.get("NADA_OPS", "auto")
    value = value.strip().lower()
    if value not in MODES:
        raise ValueError(f"impl / NADA_OPS must be one of {MODES}, got {value!r}")
    return value


def use_cuda(x: torch.Tensor, impl: str | None, op: str) -> bool:
    """Whether this call should run the CUDA kernel."""
    m = mode(impl)
    if m == "ref":
        return False
    if x.device.type != "cuda":
        if m == "cuda" and impl is not None:
            raise ValueError(f"{op}: impl='cuda' needs a CUDA tensor, got one on {x.device}")
        return False
    from . import _plugin

    if m == "cuda":
        _plugin.get_plugin(strict=True)
        return True
    if op not in AUTO_KERNELS:
        return False
    if _plugin.get_plugin(strict=False) is None:
        return False
    if _in_selfcheck:
        return True
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    if index not in selfcheck_results:
        _run_selfcheck(x.device)
    return selfcheck_results[index][0]


def _run_selfcheck(device: torch.device) -> None:
    global _in_selfcheck
    from ._selfcheck import run_selfcheck

    index = device.index if device.index is not None else torch.cuda.current_device()
    _in_selfcheck = True
    try:
        # The first kernel call may come from a no_grad / inference_mode / autocast region (sampling,
        # the layer search's frozen twin); the check needs gradients and full precision regardless.
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cuda", enabled=False):
            ok, detail = run_selfcheck(torch.device("cuda", index))
    except Exception as exc:  # a crash in the kernels counts as a failed check
        ok, detail = False, f"self-check raised {type(exc).__name__}: {exc}"
    finally:
        _in_selfcheck = False
    selfcheck_results[index] = (ok, detail)
    if not ok:
        warnings.warn(
            f"stylegan2_ops: the CUDA kernels failed their self-check on cuda:{index} ({detail}); "
            "they are disabled for this process and the reference ops are used instead. "
            "Set NADA_OPS=ref to silence this, and please report it.",
            RuntimeWarning,
            stacklevel=3,
        )
    else:
        log.info("stylegan2_ops: CUDA kernels passed their self-check on cuda:%d", index)
