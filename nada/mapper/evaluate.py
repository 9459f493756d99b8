"""The shapes oracle's verdict on a mapper: edited vs unedited images of the same latents.

Latents: one z per seed (``torch.Generator().manual_seed(seed)``, as ``nada eval``), mapped at
the run's truncation (0.7). Metrics:

- ``target_attainment``: share of edited images in the target colour / shape / style, among the
  latents whose unedited image is not there already (``already_in_target`` says how many were);
  ``target_share_before`` / ``_after`` over all latents;
- what else was kept: ``style_kept``, ``shape_kept`` (not for a shape edit), ``colour_kept``
  (not for a colour edit; only where the style shows colour), ``centre_shift_px``,
  ``size_abs_change_px``;
- ``diversity``: entropy of the edited images' non-target factors over the unedited ones
  (shape for a colour edit, colour for a shape edit; 1.0 = nothing lost).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..shapes.evaluate import _entropy, _ratio, latents, parse_target
from ..shapes.renderer import COLOURS, SHAPES, STYLES, STYLES_WITH_COLOUR
from .network import LevelsMapper


@torch.no_grad()
def evaluate_mapper(
    G,                                  # the generator the mapper edits
    mapper: LevelsMapper,
    target: str,                        # a colour, shape or style of the shapes world
    seeds: Iterable[int] = range(256),
    strength: float = 0.1,
    truncation: float = 0.7,
    oracle=None,                        # default: the shipped oracle
    batch_size: int = 32,
) -> dict:
    tgt = parse_target(target)
    seeds = [int(s) for s in seeds]
    dev = G.mapping.w_avg.device
    if oracle is None:
        from ..shapes.oracle import load_oracle

        oracle = load_oracle(dev)
    z = latents(seeds, G.z_dim)
    img0, img1 = [], []
    for chunk in z.split(batch_size):
        ws = G.mapping(chunk.to(dev), truncation)
        img0.append(G.synthesis(ws, noise_mode="const").float())
        img1.append(G.synthesis(mapper.edit(ws, strength), noise_mode="const").float())
    p0, p1 = oracle.predict(torch.cat(img0)), oracle.predict(torch.cat(img1))
    key = tgt.kind  # 'colour' | 'shape' | 'style': the oracle head the target is read from
    before, after = p0[key] == tgt.index, p1[key] == tgt.index
    fresh = ~before
    styles_with_colour = [STYLES.index(s) for s in STYLES_WITH_COLOUR]
    colour_shows = torch.isin(p0["style"].cpu(), torch.tensor(styles_with_colour))
    m = {
        "target": tgt.name, "target_kind": tgt.kind, "n": len(seeds), "strength": float(strength),
        "truncation": float(truncation),
        "target_attainment": after[fresh].float().mean().item() if fresh.any() else None,
        "already_in_target": int(before.sum()),
        "target_share_before": before.float().mean().item(),
        "target_share_after": after.float().mean().item(),
        "style_kept": (p1["style"] == p0["style"]).float().mean().item(),
        "shape_kept": None if key == "shape" else (p1["shape"] == p0["shape"]).float().mean().item(),
        "colour_kept": None,
        "centre_shift_px": (p1["centre"] - p0["centre"]).norm(dim=1).mean().item(),
        "size_abs_change_px": (p1["size"] - p0["size"]).abs().mean().item(),
        "diversity": None,
    }
    if key != "colour" and colour_shows.any():
        sel = colour_shows.to(p0["colour"].device)
        m["colour_kept"] = (p1["colour"][sel] == p0["colour"][sel]).float().mean().item()
    if key == "colour":
        m["diversity"] = _ratio(_entropy(p1["shape"], len(SHAPES)), _entropy(p0["shape"], len(SHAPES)))
    elif key == "shape" and colour_shows.any():
        m["diversity"] = _ratio(_entropy(p1["colour"], len(COLOURS)), _entropy(p0["colour"], len(COLOURS)))
    else:
        m["diversity"] = _ratio(_entropy(p1["shape"], len(SHAPES)), _entropy(p0["shape"], len(SHAPES)))
    return m


def format_mapper_table(m: dict) -> str:
    """The metrics as an aligned two-column text table."""
    rows = [
        ("edit target", f"{m['target']} ({m['target_kind']})"),
        ("images", m["n"]),
        ("target attainment", m["target_attainment"]),
        ("  (already in target, excluded)", m["already_in_target"]),
        ("target share before / after", f"{m['target_share_before']:.3f} / {m['target_share_after']:.3f}"),
        ("style kept", m["style_kept"]),
        ("shape kept", m["shape_kept"]),
        ("colour kept", m["colour_kept"]),
        ("mean centre shift (px)", m["centre_shift_px"]),
        ("mean |size change| (px)", m["size_abs_change_px"]),
        ("diversity kept", m["diversity"]),
    ]
    width = max(len(label) for label, _ in rows)
    fmt = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    return "\n".join(f"{label:<{width}}  {fmt(v)}" for label, v in rows)
