"""Images from seeds: the z of a seed (NVIDIA's convention), batched generation, grids."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .generator import Generator


def parse_seeds(text: str) -> list[int]:
    """``'0-15'``, ``'1,5,9'`` or ``'0-3,10'`` → seeds in order, ranges inclusive."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"bad seed list {text!r} (at {part!r})", "use e.g. 0-15 or 1,5,9") from None
    if not seeds or min(seeds) < 0 or max(seeds) >= 2**32:
        raise ConfigError(f"bad seed list {text!r}", "seeds are integers in [0, 2^32), e.g. 0-15")
    return seeds


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """z [N, z_dim] with row i = ``np.random.RandomState(seed_i).randn(z_dim)`` (as NVIDIA's
    generate.py), so a seed names the same latent here and in the reference tools."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float()


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] → uint8 [N, H, W, C] (NVIDIA's rounding)."""
    x = (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate_images(
    G: Generator,
    seeds: Sequence[int],
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 8,
) -> np.ndarray:
    """uint8 [N, H, W, C] for the seeds; random noise (if asked) is seeded by each seed too."""
    dev = G.mapping.w_avg.device
    out = []
    for i in range(0, len(seeds), batch_size):
        chunk = list(seeds[i : i + batch_size])
        z = z_from_seeds(chunk, G.z_dim).to(dev)
        noise = None
        if noise_mode == "random":  # per-seed noise, independent of batching
            per = [G.make_noise(1, torch.Generator().manual_seed(s), dev) for s in chunk]
            noise = {k: torch.cat([p[k] for p in per]) for k in per[0]}
        img = G(z, truncation_psi, truncation_cutoff, noise_mode=noise_mode, noise=noise)
        out.append(to_uint8(img))
    return np.concatenate(out)


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 0) -> np.ndarray:
    """Tile uint8 [N, H, W, C] into one [rows·H, cols·W, C] image (cols default ≈ sqrt N)."""
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), dtype=images.dtype)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = im
    return grid
