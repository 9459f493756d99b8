"""``nada eval``: measure what an adaptation did, with the oracle as judge.

For fixed latents (one per seed, ``torch.Generator().manual_seed(seed)``), the frozen and the
adapted generator each draw an image; the oracle reads both. Metrics (see SHAPES_WORLD.md):

- ``target_attainment``: share of adapted images the oracle puts in the target style (or target
  colour bucket, for a colour edit); ``frozen_target_share`` is the same share before adapting.
- content preserved: ``shape_preserved`` (adapted shape == frozen shape), ``colour_kept``
  (same colour bucket; only for a style edit between styles that show colour, else None),
  ``centre_shift_px`` (mean distance between the centres), ``size_change_px`` (mean signed
  change of the circumradius) and ``size_abs_change_px``.
- diversity kept: ``diversity_shape`` / ``diversity_colour`` = entropy of the adapted images'
  shape (colour) distribution over that of the frozen images (1.0 = nothing lost); ``diversity``
  is their mean (colour left out where it does not show).
- ``clip_alignment``: mean cosine between each image's CLIP edit direction (adapted - frozen
  embedding) and the text direction (target - source), when a CLIP encoder is given.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..errors import ConfigError
from .renderer import COLOURS, SHAPES, STYLES, STYLES_WITH_COLOUR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """What the edit aims at: a style or a colour bucket of the shapes world."""

    kind: str  # "style", "colour" or "shape" (the oracle head that reads it)
    index: int  # into STYLES, COLOURS or SHAPES
    name: str  # canonical name


def parse_target(text: str) -> Target:
    """A style, colour or shape named in ``text`` ('sketch', 'pixel_art', 'a neon sign', 'blue',
    'a star'); a style wins over a colour, a colour over a shape."""
    norm = " ".join(str(text).lower().replace("_", " ").replace("-", " ").split())
    squashed = norm.replace(" ", "")
    for i, style in enumerate(STYLES):
        if style in norm or style.replace(" ", "") in squashed:
            return Target("style", i, style)
    for i, colour in enumerate(COLOURS):
        if colour in norm.split() or colour == norm:
            return Target("colour", i, colour)
    for i, shape in enumerate(SHAPES):
        if shape in norm.split():
            return Target("shape", i, shape)
    if "pencil" in norm or "drawing" in norm:
        return Target("style", STYLES.index("sketch"), "sketch")
    raise ConfigError(
        f"target {text!r} names no style or colour of the shapes world",
        f"use one of: {', '.join(STYLES + COLOURS + SHAPES)}",
    )


def _device_of(module: torch.nn.Module) -> torch.device:
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def latents(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """[len(seeds), z_dim] standard normal latents, one ``torch.Generator`` per seed (on CPU)."""
    return torch.cat([torch.randn(1, z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def generate(G: torch.nn.Module, z: torch.Tensor, batch_size: int = 32, truncation_psi: float = 1.0) -> torch.Tensor:
    """Images [N,3,H,W] in [-1,1] (on CPU) from ``G`` per the nada.networks.Generator contract."""
    device = _device_of(G)
    out = []
    for start in range(0, z.shape[0], batch_size):
        zb = z[start : start + batch_size].to(device)
        out.append(G(zb, truncation_psi=truncation_psi, noise_mode="const").float().cpu())
    return torch.cat(out)


def _entropy(labels: torch.Tensor, k: int) -> float:
    p = torch.bincount(labels.cpu(), minlength=k).double()
    p = p / p.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def _ratio(a: float, b: float) -> float:
    if b <= 1e-12:
        return 1.0 if a <= 1e-12 else math.inf
    return a / b


def evaluate(
    frozen: torch.nn.Module,
    adapted: torch.nn.Module,
    target: str,
    seeds: Iterable[int] = range(256),
    oracle=None,
    clip=None,
    source_text: str | None = None,
    target_text: str | None = None,
    batch_size: int = 32,
    truncation_psi: float = 1.0,
) -> dict:
    """Oracle metrics of ``adapted`` against ``frozen`` for ``target`` (a style or colour name).

    ``oracle`` defaults to the shipped one (on the adapted generator's device). ``clip`` is an
    optional encoder with ``encode_image`` / ``encode_text`` (nada.guidance contract); with
    ``source_text`` and ``target_text`` it adds ``clip_alignment``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("no seeds to evaluate", "pass e.g. --seeds 0-255")
    tgt = parse_target(target)
    z_dim = int(frozen.z_dim)
    if int(adapted.z_dim) != z_dim:
        raise ConfigError(f"z_dim differs: frozen {z_dim}, adapted {adapted.z_dim}", "compare twins of one generator")
    if oracle is None:
        from .oracle import load_oracle

        oracle = load_oracle(_device_of(adapted))
    z = latents(seeds, z_dim)
    img_f = generate(frozen, z, batch_size, truncation_psi)
    img_a = generate(adapted, z, batch_size, truncation_psi)
    pf, pa = oracle.predict(img_f), oracle.predict(img_a)

    # where does colour show? for a style edit: the target style; for a colour edit: always judged
    colour_shows = tgt.kind == "colour" or tgt.name in STYLES_WITH_COLOUR
    attained = pa[tgt.kind] == tgt.index  # the oracle head of the target's kind
    frozen_share = pf[tgt.kind] == tgt.index
    ent_shape_f, ent_shape_a = _entropy(pf["shape"], 5), _entropy(pa["shape"], 5)
    ent_col_f, ent_col_a = _entropy(pf["colour"], len(COLOURS)), _entropy(pa["colour"], len(COLOURS))
    div_shape = _ratio(ent_shape_a, ent_shape_f)
    div_colour = _ratio(ent_col_a, ent_col_f) if colour_shows and tgt.kind == "style" else None
    metrics = {
        "target": tgt.name,
        "target_kind": tgt.kind,
        "n": len(seeds),
        "seeds": f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else seeds,
        "target_attainment": attained.float().mean().item(),
        "frozen_target_share": frozen_share.float().mean().item(),
        "shape_preserved": (pa["shape"] == pf["shape"]).float().mean().item(),
        "colour_kept": (
            (pa["colour"] == pf["colour"]).float().mean().item() if tgt.kind == "style" and colour_shows else None
        ),
        "centre_shift_px": (pa["centre"] - pf["centre"]).norm(dim=1).mean().item(),
        "size_change_px": (pa["size"] - pf["size"]).mean().item(),
        "size_abs_change_px": (pa["size"] - pf["size"]).abs().mean().item(),
        "diversity_shape": div_shape,
        "diversity_colour": div_colour,
        "diversity": div_shape if div_colour is None else (div_shape + div_colour) / 2,
        "clip_alignment": None,
    }
    if clip is not None and source_text and target_text:
        metrics["clip_alignment"] = clip_alignment(clip, img_f, img_a, source_text, target_text, batch_size)
    return metrics


@torch.no_grad()
def clip_alignment(clip, img_f: torch.Tensor, img_a: torch.Tensor, source_text: str, target_text: str, batch_size: int = 32) -> float:
    """Mean cosine between per-image CLIP edit directions and the text direction."""
    text = clip.encode_text([source_text, target_text]).float()
    d_text = torch.nn.functional.normalize(text[1] - text[0], dim=0)
    cos = []
    for start in range(0, img_f.shape[0], batch_size):
        ef = torch.nn.functional.normalize(clip.encode_image(img_f[start : start + batch_size]).float(), dim=1)
        ea = torch.nn.functional.normalize(clip.encode_image(img_a[start : start + batch_size]).float(), dim=1)
        d_img = torch.nn.functional.normalize(ea - ef, dim=1)
        cos.append(d_img @ d_text.to(d_img.device))
    return torch.cat(cos).mean().item()


def format_table(metrics: dict) -> str:
    """The metrics as an aligned two-column text table."""
    labels = [
        ("target", "target"),
        ("n", "images"),
        ("target_attainment", "target attainment"),
        ("frozen_target_share", "  (frozen already in target)"),
        ("shape_preserved", "shape preserved"),
        ("colour_kept", "colour kept"),
        ("centre_shift_px", "mean centre shift (px)"),
        ("size_change_px", "mean size change (px)"),
        ("size_abs_change_px", "mean |size change| (px)"),
        ("diversity_shape", "diversity: shape entropy ratio"),
        ("diversity_colour", "diversity: colour entropy ratio"),
        ("diversity", "diversity kept"),
        ("clip_alignment", "CLIP alignment (cosine)"),
    ]
    width = max(len(label) for _, label in labels)
    lines = []
    for key, label in labels:
        v = metrics.get(key)
        if key == "target":
            v = f"{metrics['target']} ({metrics['target_kind']})"
        if v is None:
            text = "n/a"
        elif isinstance(v, float):
            text = f"{v:.3f}"
        else:
            text = str(v)
        lines.append(f"{label:<{width}}  {text}")
    return "\n".join(lines)


def write_json(metrics: dict, path: str | Path) -> Path:
    """Write ``metrics`` as JSON (atomic replace) without destroying an earlier evaluation there:
    fields the new one leaves out or empty (e.g. CLIP alignment, not computed by default) are
    kept, and when a field both have differs, the earlier file is first kept beside it as
    ``<name>.1.json`` (``.2``, ...)."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = dict(metrics)
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict):
            if any(k in old and old[k] is not None and v is not None and old[k] != v for k, v in metrics.items()):
                n = 1
                while (keep := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
                    n += 1
                keep.write_text(json.dumps(old, indent=2) + "\n")
            merged = {**old, **{k: v for k, v in metrics.items() if v is not None or k not in old}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    os.replace(tmp, path)
    return path
