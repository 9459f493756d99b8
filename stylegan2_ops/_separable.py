"""Fast CPU path of the reference upfirdn2d for separable filters: shifted multiply-adds.

PyTorch's depthwise convolutions are slow on CPU. A separable FIR filter is, per axis, a few
scaled shifted copies of the input added together (``[1,3,3,1]`` is four taps), and each is one
vectorised pass over memory. Up-sampling is done per output phase (polyphase): phase ``r`` of
the output only sees the taps that land on non-inserted samples, so zeros are never
materialised or multiplied. Down-sampling reads strided slices, so dropped samples are never
computed. Taps that fall on padding are clipped instead of padding the input, and the work is
cut into cache-sized blocks of the flattened batch*channel axis, so each sample crosses main
memory about once instead of once per tap.

The op is an ``autograd.Function`` whose backward is the same op with the adjoint parameters
(up and down swapped, taps reversed, padding mirrored), so gradients of any order exist.
"""

from __future__ import annotations

import torch

# One axis of the op: (correlation taps, up, down, pad0, pad1).
AxisParams = tuple[tuple[float, ...], int, int, int, int]


def split_separable(f: torch.Tensor, gain: float, flip_filter: bool):
    """Correlation taps ``(gx, gy)`` as Python floats if ``f`` is separable, else ``None``.

    A 1-D ``f`` is separable by definition; a 2-D ``f`` is accepted when it is an exact rank-1
    outer product (to a few ulps of its dtype), as ``setup_filter([1, 3, 3, 1])`` produces.
    """
    if f.ndim == 1:
        taps = f.detach().double() * (gain ** 0.5)
        g = taps if flip_filter else taps.flip(0)
        t = tuple(g.tolist())
        return t, t
    f2 = f.detach().double() * gain
    i, j = divmod(int(f2.abs().argmax()), f2.shape[1])
    pivot = f2[i, j]
    if pivot == 0:
        return None
    col = f2[:, j]
    row = f2[i, :] / pivot
    err = (torch.outer(col, row) - f2).abs().max()
    tol = 8 * torch.finfo(f.dtype).eps * pivot.abs()
    if err > tol:
        return None
    if not flip_filter:
        col, row = col.flip(0), row.flip(0)
    return tuple(row.tolist()), tuple(col.tolist())


def supported(up, down) -> bool:
    """Each axis must either up-sample or down-sample (or neither), not both."""
    return all(u == 1 or d == 1 for u, d in zip(up, down))


def _take(x: torch.Tensor, dim: int, start: int, count: int, step: int) -> torch.Tensor:
    """``count`` samples of ``x`` along ``dim`` from ``start`` with stride ``step`` (a view)."""
    return x.narrow(dim, start, (count - 1) * step + 1)[(slice(None),) * dim + (slice(None, None, step),)]


def _axis_terms(n: int, p: AxisParams):
    """The shifted-add plan of one axis: ``(out_start, out_step, count, in_start, in_step, w)``.

    Output sample ``j = out_start + i*out_step`` gets ``w * x[in_start + i*in_step]`` for
    ``i < count``; taps that fall on padding are clipped away, so nothing is padded.
    """
    g, up, down, p0, p1 = p
    n_out = (n * up + p0 + p1 - len(g)) // down + 1
    terms = []
    if up == 1:  # y[j] = sum_t g[t] x[j*down + t - p0]
        for t, w in enumerate(g):
            if w == 0:
                continue
            j0 = max(0, -(-(p0 - t) // down))           # first j with j*down + t - p0 >= 0
            j1 = min(n_out, (n - 1 - t + p0) // down + 1)  # one past the last j with index < n
            if j1 > j0:
                terms.append((j0, 1, j1 - j0, j0 * down + t - p0, down, w))
        return n_out, terms
    # Polyphase up-sampling (down == 1): output j = q*up + r reads x[q + (r + t - p0) / up].
    for r in range(up):
        for t, w in enumerate(g):
            if w == 0 or (r + t - p0) % up:
                continue
            s = (r + t - p0) // up
            q0 = max(0, -s)
            q1 = min(-(-(n_out - r) // up), n - s)
            if q1 > q0:
                terms.append((q0 * up + r, up, q1 - q0, q0 + s, 1, w))
    return n_out, terms


def _run_axis(out: torch.Tensor, x: torch.Tensor, dim: int, n_out: int, terms) -> None:
    """``out = sum of the plan's scaled shifted slices of x`` along ``dim`` (no autograd)."""
    full = next((i for i, tm in enumerate(terms) if tm[1] == 1 and tm[2] == n_out), None)
    if full is None:
        out.zero_()
    else:
        o0, _, cnt, i0, istep, w = terms[full]
        torch.mul(_take(x, dim, i0, cnt, istep), w, out=out)
    for i, (o0, ostep, cnt, i0, istep, w) in enumerate(terms):
        if i != full:
            _take(out, dim, o0, cnt, ostep).add_(_take(x, dim, i0, cnt, istep), alpha=w)


# Bytes of input per cache block: every pass of a block then runs out of the L2 cache, and
# main memory sees each input and output sample about once.
BLOCK_BYTES = 1 << 19


def _channels_last(x: torch.Tensor) -> bool:
    """Stored NHWC (``torch.channels_last``) and not also plain contiguous (C = 1, 1x1 maps)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _forward(x: torch.Tensor, px: AxisParams, py: AxisParams) -> torch.Tensor:
    n, c, h, w = x.shape
    oh, plan_y = _axis_terms(h, py)
    ow, plan_x = _axis_terms(w, px)
    # The axes are dims 1 and 2 of a view whose dim 0 is cut into cache blocks: [N*C, H, W] for
    # NCHW storage; for NHWC, [N, H, W, C] (each shifted slice a run of whole pixels), whose
    # result is NHWC as well.
    nhwc = _channels_last(x)
    flat = x.permute(0, 2, 3, 1) if nhwc else x.reshape(n * c, h, w)
    trail = (c,) if nhwc else ()
    out = torch.empty((flat.shape[0], oh, ow) + trail, dtype=x.dtype, device=x.device)
    # Filter the axis that shrinks the data most first.
    y_first = oh * w <= h * ow
    mid_hw = (oh, w) if y_first else (h, ow)
    rows = max(1, BLOCK_BYTES // max(1, flat[0].numel() * x.element_size()))
    mid = torch.empty((min(rows, flat.shape[0]),) + mid_hw + trail, dtype=x.dtype, device=x.device)
    for s in range(0, flat.shape[0], rows):  # cache blocks over dim 0
        blk, dst = flat[s: s + rows], out[s: s + rows]
        tmp = mid[: blk.shape[0]]
        if y_first:
            _run_axis(tmp, blk, 1, oh, plan_y)
            _run_axis(dst, tmp, 2, ow, plan_x)
        else:
            _run_axis(tmp, blk, 2, ow, plan_x)
            _run_axis(dst, tmp, 1, oh, plan_y)
    return out.permute(0, 3, 1, 2) if nhwc else out.reshape(n, c, oh, ow)


def _adjoint(p: AxisParams, n_in: int, n_out: int) -> AxisParams:
    """Axis parameters of the transpose of the axis op ``p`` (input length ``n_in``)."""
    g, up, down, p0, _ = p
    k = len(g)
    return (tuple(reversed(g)), down, up, k - 1 - p0, n_in * up - up - n_out * down + p0 + 1)


class SeparableUpFirDn2d(torch.autograd.Function):
    """upfirdn2d with per-axis taps; backward is the same op with adjoint parameters."""

    @staticmethod
    def forward(ctx, x, px: AxisParams, py: AxisParams):
        ctx.params = (px, py, x.shape[2], x.shape[3])
        y = _forward(x, px, py)
        ctx.out_hw = (y.shape[2], y.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy):
        px, py, h, w = ctx.params
        oh, ow = ctx.out_hw
        fmt = torch.channels_last if _channels_last(dy) else torch.contiguous_format
        dx = SeparableUpFirDn2d.apply(dy.contiguous(memory_format=fmt), _adjoint(px, w, ow), _adjoint(py, h, oh))
        return dx, None, None


def upfirdn2d_separable(x, gx, gy, up, down, padding):
    """Run the fast path; ``gx``/``gy`` are correlation taps (see ``split_separable``)."""
    px0, px1, py0, py1 = padding
    px = (gx, up[0], down[0], px0, px1)
    py = (gy, up[1], down[1], py0, py1)
    fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
    return SeparableUpFirDn2d.apply(x.contiguous(memory_format=fmt), px, py)
