"""Inverting image files end to end (what ``nada invert`` and the web demo's Edit tab call):
read and align the images, optionally encode them with e4e, project, write the outputs."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from .align import align, resolve_mode
from .config import InvertConfig
from .images import InputImage, min_side_for, read_images, to_tensor
from .projector import Projection, image_errors, project

log = logging.getLogger(__name__)

LATENTS_FILE = "latents.safetensors"
METRICS_FILE = "metrics.json"


@dataclass
class Inversion:
    """Inverted images: the aligned targets, the projection and where it came from."""

    names: list[str]                # output stems, unique
    targets: np.ndarray             # uint8 [N, H, W, 3] what was inverted (aligned)
    projection: Projection
    alignment: list[str]            # per image: what alignment did
    notes: list[list[str]]          # per image: conversions (greyscale, RGBA, ...)
    encoder: str | None = None      # e4e file when one started the optimisation


def unique_stems(paths: list[Path]) -> list[str]:
    """File stems, with ``_2``, ``_3`` … appended where two inputs share one."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = p.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return out


def load_inputs(paths: list[str], resolution: int, align_mode: str, generator_spec=None) -> tuple[list[InputImage], np.ndarray, list[str]]:
    """Read every image (all checked before any work), align each to ``resolution``."""
    inputs = read_images(paths, min_side_for(resolution))
    mode = resolve_mode(align_mode, generator_spec)
    aligned, how = [], []
    for im in inputs:
        px, what = align(im.pixels, resolution, mode, im.path.name)
        aligned.append(px)
        how.append(what)
    return inputs, np.stack(aligned), how


def invert_arrays(
    G,
    targets: np.ndarray,                # uint8 [N, H, W, 3] at the generator's resolution
    cfg: InvertConfig,
    encoder=None,                       # nada.invert.e4e.E4E or None
    refine: bool = True,                # with an encoder: optimise from its codes (else use them as they are)
    progress: bool = True,
    on_step=None,
    loss=None,                          # a ReconstructionLoss; default build_loss(cfg.loss)
    stop=None,                          # polled each step (see project)
) -> Projection:
    """Project (or encode, then refine) uint8 images with ``G``."""
    x = to_tensor(targets, G.mapping.w_avg.device)
    if encoder is None:
        return project(G, x, cfg, loss=loss, progress=progress, on_step=on_step, stop=stop)
    start = time.perf_counter()
    with torch.no_grad():
        ws0 = torch.cat([encoder(x[i : i + 8]) for i in range(0, len(x), 8)]).to(x.device)
    if (ws0.shape[1], ws0.shape[2]) != (G.num_ws, G.w_dim):
        raise CheckpointError(f"the encoder writes [{ws0.shape[1]}, {ws0.shape[2]}] codes, the generator reads "
                              f"[{G.num_ws}, {G.w_dim}]", "use the encoder trained for this generator")
    if refine:
        p = project(G, x, cfg, loss=loss, init_ws=ws0, progress=progress, on_step=on_step, stop=stop)
        p.seconds = time.perf_counter() - start
        return p
    from .losses import build_loss
    from .projector import const_noise

    loss = loss if loss is not None else build_loss(cfg.loss, x.device)
    noise = {k: v.expand(len(x), -1, -1, -1).clone() for k, v in const_noise(G).items()}
    with torch.no_grad():
        img = G.synthesis(ws0, noise_mode="const")
        d = loss(img, x)
        parts = loss.parts(img, x)
    metrics = [{**image_errors(img[i : i + 1], x[i : i + 1]), "loss": float(d[i]),
                "perceptual": float(parts["lpips-vgg16"][i]) if "lpips-vgg16" in parts else None,
                "terms": {k: float(v[i]) for k, v in parts.items()}} for i in range(len(x))]
    return Projection(ws0, noise, img, loss.name, metrics, time.perf_counter() - start, 0)


def write_inversion(out_dir: str | os.PathLike, inv: Inversion, generator_path: Path, cfg: InvertConfig,
                    save_inputs: bool = True, generator_label: str | None = None) -> dict:
    """Into ``out_dir``: ``latents.safetensors`` (``ws`` [N, num_ws, w_dim] + ``noise.<layer>``),
    ``<name>_recon.png`` (and ``<name>_input.png``, the aligned target) per image, and
    ``metrics.json``; every file written atomically. ``generator_label`` is what the files record
    as the generator (default its path; the web demo passes the spec, never a server path).
    Returns the metrics."""
    from PIL import Image
    from safetensors.torch import save_file

    from ..checkpoints import atomic_write
    from ..hub import sha256_file
    from ..networks.sampling import to_uint8

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = inv.projection
    tensors = {"ws": p.ws.detach().cpu().float().contiguous()}
    tensors.update({f"noise.{k}": v.detach().cpu().float().contiguous() for k, v in p.noise.items()})
    meta = {
        "nada_format": "inverted-latents",
        "generator": generator_label or str(generator_path),
        "generator_sha256": sha256_file(generator_path),
        "images": json.dumps(inv.names),
        "loss": p.loss_name,
    }
    atomic_write(out / LATENTS_FILE, lambda tmp: save_file(tensors, tmp, metadata=meta))
    recon = to_uint8(p.images)
    for name, img, tgt in zip(inv.names, recon, inv.targets):
        atomic_write(out / f"{name}_recon.png", lambda tmp, a=img: Image.fromarray(a).save(tmp, format="PNG"))
        if save_inputs:
            atomic_write(out / f"{name}_input.png", lambda tmp, a=tgt: Image.fromarray(a).save(tmp, format="PNG"))
    per_image = [{"name": n, **m, "alignment": a, "notes": notes}
                 for n, m, a, notes in zip(inv.names, p.metrics, inv.alignment, inv.notes)]
    summary = {
        "loss": p.loss_name,
        "space": "W+" if (cfg.wplus or inv.encoder) else "W",
        "steps": p.steps,
        "encoder": inv.encoder,
        "generator": generator_label or str(generator_path),
        "seconds": round(p.seconds, 3),
        "seconds_per_image": round(p.seconds / max(1, len(inv.names)), 3),
        "mean_pixel_mse": float(np.mean([m["pixel_mse"] for m in p.metrics])),
        "mean_psnr_db": float(np.mean([m["psnr_db"] for m in p.metrics])),
        "config": cfg.to_dict(),
        "images": per_image,
    }
    atomic_write(out / METRICS_FILE, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
