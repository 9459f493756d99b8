"""Applying a mapper: edited latents and images for seeds, and the unedited/edited grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..networks.sampling import image_grid, parse_seeds, to_uint8, z_from_seeds
from .network import LevelsMapper


@torch.no_grad()
def edit_images(
    G,                                  # nada.networks.Generator
    mapper: LevelsMapper,
    seeds: Sequence[int],
    strength: float,                    # w' = w + strength · M(w); 0 = unedited
    truncation: float = 0.7,            # truncation psi of the seeds' latents (StyleCLIP 0.7)
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, H, W, 3] unedited and edited images of the seeds' latents (const noise)."""
    dev = G.mapping.w_avg.device
    before, after = [], []
    for i in range(0, len(seeds), batch_size):
        z = z_from_seeds(list(seeds[i: i + batch_size]), G.z_dim).to(dev)
        ws = G.mapping(z, truncation)
        before.append(to_uint8(G.synthesis(ws, noise_mode="const")))
        after.append(to_uint8(G.synthesis(mapper.edit(ws, strength), noise_mode="const")))
    return np.concatenate(before), np.concatenate(after)


def edit_grid(G, mapper: LevelsMapper, seeds: str | Sequence[int], strength: float, truncation: float = 0.7,
              pad: int = 2) -> np.ndarray:
    """One image: unedited row above edited row, one column per seed."""
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    a, b = edit_images(G, mapper, seeds, strength, truncation)
    return image_grid(np.concatenate([a, b]), cols=len(seeds), pad=pad)


def mapper_and_generator(mapper_path: str, generator: str | None = None, device=None):
    """Load a mapper and the generator to edit: ``generator`` (any generator spec) or, when
    None, the one recorded in the mapper file. Refuses a generator of another shape in one
    line; returns ``(G, loaded_mapper, note)`` where ``note`` says when the generator is not the
    one the mapper was trained on."""
    from ..checkpoints import load_generator
    from ..errors import CheckpointError
    from ..hub import resolve_generator
    from .files import check_fits, load_mapper

    loaded = load_mapper(mapper_path, device=device)
    spec = generator
    if spec is None:
        spec = (loaded.metadata.get("generator") or {}).get("spec")
        if spec is None:
            raise CheckpointError(f"mapper {mapper_path} does not record its generator", "pass --generator")
    try:
        gen_path = resolve_generator(spec)
    except CheckpointError as exc:
        if generator is None:
            raise CheckpointError(f"the mapper's own generator {spec!r} is not available here ({exc.message})",
                                  "pass --generator") from None
        raise
    G = load_generator(gen_path, device=device).generator
    note = check_fits(loaded, G, gen_path)
    return G, loaded, note
