"""Which synthesis layers learn: adaptive layer freezing (StyleGAN-NADA §4.2) and manual sets.

The search optimises W+ codes against the global CLIP loss with every generator weight frozen,
so autograd computes gradients for the codes only (the official code unfreezes the whole
generator first and so also pays for weight gradients nobody reads; ``weight_grads=True``
reproduces that cost for benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import layer_groups
from ..networks import LayerRef


@dataclass(frozen=True)
class LayerSelection:
    """The outcome of one layer choice: style indices, layer names, and the |Δw| score per index."""

    w_indices: tuple[int, ...]          # chosen style indices, ascending
    names: tuple[str, ...]              # trainable layer names, forward order
    scores: tuple[float, ...] = ()      # mean |Δw| per style index (empty for manual sets)


def conv_layers(layers: Sequence[LayerRef]) -> list[LayerRef]:
    """Styled conv layers only (no ToRGB)."""
    return [ref for ref in layers if not ref.name.endswith(".torgb")]


def candidate_indices(layers: Sequence[LayerRef], allowed_names: Sequence[str] | None = None) -> list[int]:
    """Style indices consumed by at least one (allowed) conv layer: the search ranks only these,
    since an index read by a ToRGB alone would unfreeze nothing."""
    allowed = None if allowed_names is None else set(allowed_names)
    return sorted({ref.w_index for ref in conv_layers(layers) if allowed is None or ref.name in allowed})


def names_for_indices(layers: Sequence[LayerRef], indices: Sequence[int], allowed_names: Sequence[str] | None = None) -> list[str]:
    """Conv layer names (forward order) that consume any of ``indices``."""
    wanted = set(int(i) for i in indices)
    allowed = None if allowed_names is None else set(allowed_names)
    return [ref.name for ref in conv_layers(layers) if ref.w_index in wanted and (allowed is None or ref.name in allowed)]


def manual_layers(spec: str | None, layers: Sequence[LayerRef], img_resolution: int) -> list[str]:
    """Names selected by a layer spec (``b8.*``, ``texture``, …); None = every conv layer (the
    official default: everything except mapping and ToRGB)."""
    if spec is None:
        return [ref.name for ref in conv_layers(layers)]
    return layer_groups.resolve(spec, img_resolution)


def set_trainable(synthesis: nn.Module, layers: Sequence[LayerRef], names: Sequence[str]) -> list[nn.Parameter]:
    """Freeze the whole synthesis network, then switch on the parameters of the named layers.
    Returns those parameters."""
    synthesis.requires_grad_(False)
    wanted = set(names)
    params: list[nn.Parameter] = []
    for ref in layers:
        if ref.name in wanted:
            for p in ref.module.parameters():
                p.requires_grad_(True)
                params.append(p)
    return params


def select_layers(
    synthesis: nn.Module,                                   # the trainable synthesis network
    ws: torch.Tensor,                                       # [B, num_ws, w_dim] starting W+ codes
    global_loss: Callable[[torch.Tensor], torch.Tensor],    # images → scalar global CLIP loss
    k: int,                                                 # number of style indices to choose
    iters: int = 1,                                         # SGD steps on the codes
    lr: float = 0.01,                                       # SGD learning rate (official)
    candidates: Sequence[int] | None = None,                # style indices allowed (default: all)
    noise: dict[str, torch.Tensor] | None = None,           # noise draw for the search forward passes
    weight_grads: bool = False,                             # also compute weight grads (benchmark only)
) -> tuple[list[int], torch.Tensor]:
    """Optimise ``ws`` for ``iters`` steps against ``global_loss`` and return the ``k`` style
    indices (among ``candidates``) whose codes moved most (mean |Δw| over batch and channels),
    plus the per-index scores [num_ws]. The synthesis weights' ``requires_grad`` flags are
    left as they were found."""
    if iters < 1:
        raise ValueError(f"select_layers: iters={iters} must be >= 1")
    num_ws = ws.shape[1]
    candidates = list(range(num_ws)) if candidates is None else sorted(set(int(c) for c in candidates))
    if not 1 <= k <= len(candidates):
        raise ValueError(f"select_layers: k={k} outside [1, {len(candidates)}] candidates")
    saved = [(p, p.requires_grad) for p in synthesis.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(weight_grads)
        start = ws.detach()
        codes = start.clone().requires_grad_(True)
        opt = torch.optim.SGD([codes], lr=lr)
        for _ in range(iters):
            img = synthesis(codes, noise_mode="const", noise=noise)
            loss = global_loss(img)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if weight_grads:
            synthesis.zero_grad(set_to_none=True)
        scores = (codes.detach() - start).abs().mean(dim=-1).mean(dim=0)  # [num_ws]
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
    cand = torch.tensor(candidates, device=scores.device)
    top = torch.topk(scores[cand], k).indices
    return sorted(int(i) for i in cand[top].tolist()), scores
