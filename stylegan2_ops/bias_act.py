"""bias_act: fused bias + activation + gain + clamp, as every StyleGAN2 layer applies it.

``y = clamp(act(x + b, alpha) * gain, -clamp, clamp)`` with ``b`` broadcast along ``dim``.
Each activation has its StyleGAN2 default gain (√2 for relu/lrelu/swish, 1 otherwise) and
lrelu its default slope 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F

from . import _dispatch


@dataclass(frozen=True)
class Activation:
    """One activation: its function, default slope and gain, and its CUDA kernel code."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float  # default slope/shape parameter (lrelu only)
    def_gain: float   # default output gain
    cuda_code: int    # index understood by csrc/bias_act.cu


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0, 1),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2), 2),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), 3),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0, 4),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0, 5),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0, 6),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0, 7),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0, 8),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9),
}


def resolve_args(act: str, alpha, gain, clamp) -> tuple[Activation, float, float, float]:
    """Validate ``act`` and fill in the activation's defaults; clamp < 0 means none."""
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    spec = ACTIVATIONS[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return spec, alpha, gain, clamp


def _bias_act_ref(x, b, dim, spec, alpha, gain, clamp):
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]).to(x.dtype)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def bias_act(
    x: torch.Tensor,              # input, any shape
    b: torch.Tensor | None = None,  # 1-D bias of length x.shape[dim]
    dim: int = 1,                 # the axis b runs along
    act: str = "linear",          # linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish
    alpha: float | None = None,   # lrelu slope (default 0.2)
    gain: float | None = None,    # output gain (default: the activation's StyleGAN2 gain)
    clamp: float | None = None,   # clamp the output to [-clamp, clamp]; None = no clamp
    impl: str | None = None,      # None = $NADA_OPS; 'ref' or 'cuda'
) -> torch.Tensor:
    """Add a bias, apply an activation, scale and clamp, in one call."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")
    spec, alpha, gain, clamp = resolve_args(act, alpha, gain, clamp)
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim {dim} is out of range for x with {x.ndim} dimensions")
    dim = dim % x.ndim
    if b is not None:
        if not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"b must be a 1-D tensor of length x.shape[{dim}] = {x.shape[dim]}, "
                f"got shape {list(getattr(b, 'shape', []))}"
            )
    if _dispatch.use_cuda(x, impl, "bias_act"):
        from ._cuda_ops import bias_act_cuda

        return bias_act_cuda(x, b, dim, spec, alpha, gain, clamp)
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
