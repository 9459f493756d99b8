"""Trust but verify: compare the CUDA kernels with the reference on one device, once."""

from __future__ import annotations

import torch

from .bias_act import ACTIVATIONS, _bias_act_ref, bias_act, resolve_args
from .upfirdn2d import _parse_padding, _upfirdn2d_ref, setup_filter, upfirdn2d

CASES = [  # (up, down, padding, flip, filter)
    (1, 1, [1, 2, 1, 2], False, [1, 3, 3, 1]),
    (2, 1, [2, 1, 2, 1], False, [1, 3, 3, 1]),
    (1, 2, [1, 1, 1, 1], True, [1, 3, 3, 1]),
    ([2, 1], [1, 2], [0, 1, -1, 2], False, [1, 2, 3]),
]


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.float(), b.float(), rtol=tol, atol=tol))


def run_selfcheck(device: torch.device) -> tuple[bool, str]:
    """Forward and backward of each op on small random inputs; (passed, detail)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    for up, down, pad, flip, taps in CASES:
        f = setup_filter(taps, device=device)
        x = torch.randn([2, 3, 9, 7], generator=gen).to(device).requires_grad_(True)
        y = upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, impl="cuda")
        upv = [up, up] if isinstance(up, int) else up
        dnv = [down, down] if isinstance(down, int) else down
        xr = x.detach().clone().requires_grad_(True)
        yr = _upfirdn2d_ref(xr, f, tuple(upv), tuple(dnv), _parse_padding(pad), flip, 1)
        if y.shape != yr.shape or not _close(y, yr):
            return False, f"upfirdn2d forward mismatch (up={up}, down={down}, padding={pad})"
        dy = torch.randn(y.shape, generator=gen).to(device)
        (gx,) = torch.autograd.grad(y, x, dy)
        (gr,) = torch.autograd.grad(yr, xr, dy)
        if not _close(gx, gr):
            return False, f"upfirdn2d backward mismatch (up={up}, down={down}, padding={pad})"
    for act in ACTIVATIONS:
        x = torch.randn([4, 5, 6], generator=gen).to(device).requires_grad_(True)
        b = torch.randn([5], generator=gen).to(device).requires_grad_(True)
        y = bias_act(x, b, act=act, clamp=1.5, impl="cuda")
        spec, alpha, gain, clamp = resolve_args(act, None, None, 1.5)
        xr = x.detach().clone().requires_grad_(True)
        br = b.detach().clone().requires_grad_(True)
        yr = _bias_act_ref(xr, br, 1, spec, alpha, gain, clamp)
        if not _close(y, yr):
            return False, f"bias_act forward mismatch (act={act})"
        dy = torch.randn(y.shape, generator=gen).to(device)
        g = torch.autograd.grad(y, [x, b], dy)
        gr = torch.autograd.grad(yr, [xr, br], dy)
        if not (_close(g[0], gr[0]) and _close(g[1], gr[1])):
            return False, f"bias_act backward mismatch (act={act})"
    return True, f"{len(CASES)} upfirdn2d cases and {len(ACTIVATIONS)} activations match the reference"
