"""Editing inverted images: one latent rendered through every adapted generator (and a mapper),
laid out as a labelled collage (input, reconstruction, one column per run)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DataError
from ..networks.sampling import to_uint8


@dataclass
class RunGenerator:
    """An adapted generator of a `nada train` run (or any generator file) and its label."""

    label: str
    path: Path              # the file load_generator opens
    source: str | None      # the run's source generator spec (config.json), None for a bare file


def read_run(spec: str | os.PathLike) -> RunGenerator:
    """A run directory (its generator or domain file, its source spec) or a generator file."""
    from ..hub import resolve_generator

    p = Path(spec).expanduser()
    if not p.exists():
        raise CheckpointError(f"run {str(spec)!r} does not exist", "pass a `nada train` run directory or a generator file")
    path = resolve_generator(str(p))
    source = None
    if p.is_dir():
        try:
            cfg = json.loads((p / "config.json").read_text())
            source = cfg.get("generator") or "shapes"
            label = str(cfg.get("target") or p.name)
        except (OSError, ValueError):
            label = p.name
    else:
        label = p.stem
    return RunGenerator(label, path, source)


def source_of(runs: list[RunGenerator]) -> str:
    """The one source generator the runs were adapted from (ConfigError when they differ)."""
    sources = {r.source for r in runs if r.source is not None}
    if len(sources) > 1:
        raise ConfigError(f"the runs were adapted from different generators ({', '.join(sorted(sources))})",
                          "edit with runs of one source generator, or pass --generator")
    return sources.pop() if sources else "shapes"


def check_same_shape(G_source, G_other, label: str) -> None:
    if (G_other.num_ws, G_other.w_dim, G_other.img_resolution) != (G_source.num_ws, G_source.w_dim, G_source.img_resolution):
        raise CheckpointError(f"{label}: a generator of another shape ({G_other.img_resolution}px, {G_other.num_ws} ws) "
                              f"than the source ({G_source.img_resolution}px, {G_source.num_ws} ws)",
                              "use runs adapted from the generator the latents belong to")


def load_run_generators(G_source, runs, device) -> list[tuple[str, object]]:
    """(label, adapted generator) of each run, each checked to match ``G_source``'s shape."""
    from ..checkpoints import load_generator

    out = []
    for r in runs:
        Ga = load_generator(r.path, device=device).generator
        check_same_shape(G_source, Ga, r.label)
        out.append((r.label, Ga))
    return out


@torch.no_grad()
def render(G, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None = None, batch: int = 16) -> np.ndarray:
    """uint8 [N, H, W, 3] of ``ws`` [N, num_ws, w_dim] with the given noise maps (else const)."""
    dev = G.mapping.w_avg.device
    out = []
    for i in range(0, ws.shape[0], batch):
        nz = {k: v[i : i + batch].to(dev) for k, v in noise.items()} if noise else None
        out.append(to_uint8(G.synthesis(ws[i : i + batch].to(dev), noise_mode="const", noise=nz)))
    return np.concatenate(out)


def load_inversion(path: str | os.PathLike, num_ws: int, w_dim: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(ws, noise)`` from a `nada invert` latents file (noise maps under ``noise.<layer>``;
    a latents file without them renders with const noise)."""
    from safetensors import safe_open

    from ..mapper.files import load_latents

    ws = load_latents(path, num_ws, w_dim)
    noise = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for k in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
            if k.startswith("noise."):
                noise[k[len("noise."):]] = f.get_tensor(k).float()
    if any(v.shape[0] != ws.shape[0] for v in noise.values()):
        raise DataError(f"{path}: noise maps for another number of images than its {ws.shape[0]} latents")
    return ws, noise


def _label_strip(labels: list[str], cell: int, pad: int, height: int = 18) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    width = len(labels) * (cell + pad) - pad
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    for i, text in enumerate(labels):
        x0 = i * (cell + pad)
        text = text if draw.textlength(text, font=font) <= cell - 4 else text[: max(1, cell // 7)] + "…"
        tw = draw.textlength(text, font=font)
        draw.text((x0 + (cell - tw) / 2, 3), text, fill=(20, 20, 20), font=font)
    return np.asarray(im)


def collage(columns: list[tuple[str, np.ndarray]], cell: int = 128, pad: int = 2, labels: bool = True) -> np.ndarray:
    """One uint8 image: a labelled column per ``(label, images [N, H, W, 3])``, one row per image;
    cells resized to ``cell`` px (nearest when enlarging, so pixels stay crisp)."""
    from PIL import Image

    if not columns:
        raise ConfigError("nothing to lay out")
    n = columns[0][1].shape[0]
    if any(c[1].shape[0] != n for c in columns):
        raise ValueError("every column needs the same number of images")
    k = len(columns)
    grid = np.full((n * (cell + pad) - pad, k * (cell + pad) - pad, 3), 255, np.uint8)
    for j, (_, images) in enumerate(columns):
        for i, img in enumerate(images):
            im = Image.fromarray(img)
            if im.size != (cell, cell):
                up = cell >= im.size[0]
                im = im.resize((cell, cell), Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)
            grid[i * (cell + pad) : i * (cell + pad) + cell, j * (cell + pad) : j * (cell + pad) + cell] = np.asarray(im)
    if not labels:
        return grid
    return np.concatenate([_label_strip([c[0] for c in columns], cell, pad), grid])
