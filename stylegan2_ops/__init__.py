"""StyleGAN2's custom ops: ``bias_act``, ``upfirdn2d`` (+ resampling helpers), ``conv3x3``,
``conv_up2`` and ``conv_epilogue``.

Each op has an exact pure-PyTorch reference path (any device and dtype, differentiable to
second order) and CUDA kernels from ``csrc/`` that are compiled on first use with a CUDA
tensor, never at import; ``conv3x3`` and ``conv_epilogue`` have a CPU library built in seconds
on first use, used on the layer sizes where it measured faster. Choose with ``impl=`` or
``NADA_OPS=auto|cuda|ref``.
"""

from .bias_act import ACTIVATIONS, bias_act
from .conv import conv3x3
from .epilogue import conv_epilogue
from .upconv import conv_up2
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d


def uses_kernel(x, op: str, impl: str | None = None) -> bool:
    """Whether a call of ``op`` on ``x`` would run its CUDA kernel (else the reference path),
    so that callers can pick a formulation that suits the path (a fused CPU epilogue, say)."""
    from . import _dispatch

    return _dispatch.use_cuda(x, impl, op)


def status_report(run_selfcheck: bool = False) -> list[tuple[str, str]]:
    """Lines for ``nada info``: mode, CUDA build state and self-check results."""
    from . import _dispatch, _plugin

    rows = [("ops mode (NADA_OPS)", _dispatch.mode())]
    if _dispatch.mode() == "auto":
        rows.append(("auto-mode kernels", ", ".join(sorted(_dispatch.AUTO_KERNELS)) + " (other ops: reference)"))
    rows.append(("CUDA ops", _plugin.build_state()))
    from . import _cpu_plugin

    rows.append(("CPU kernels", _cpu_plugin.build_state() if _dispatch.mode() != "ref" else "off (NADA_OPS=ref)"))
    if run_selfcheck:
        import torch

        if torch.cuda.is_available() and _plugin.get_plugin(strict=False) is not None:
            for i in range(torch.cuda.device_count()):
                if i not in _dispatch.selfcheck_results:
                    _dispatch._run_selfcheck(torch.device("cuda", i))
    for index, (ok, detail) in sorted(_dispatch.selfcheck_results.items()):
        rows.append((f"CUDA self-check cuda:{index}", ("passed" if ok else "FAILED") + f" ({detail})"))
    if not _dispatch.selfcheck_results:
        rows.append(("CUDA self-check", "not run (runs on first use with a CUDA tensor; nada info --selfcheck)"))
    return rows


__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv3x3",
    "conv_epilogue",
    "downsample2d",
    "filter2d",
    "setup_filter",
    "status_report",
    "upfirdn2d",
    "upsample2d",
    "uses_kernel",
]
