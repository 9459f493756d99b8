"""Layer names ↔ style (W+) indices of the StyleGAN2 synthesis network.

Names are ``b{res}.conv0`` (up-sampling conv, absent at 4px), ``b{res}.conv1`` and
``b{res}.torgb``. Their style indices follow NVIDIA and rosinality: ``b4.conv1`` → 0,
``b{res}.conv0`` → 2·log2(res) − 5, ``b{res}.conv1`` → 2·log2(res) − 4,
``b{res}.torgb`` → 2·log2(res) − 3 (a ToRGB shares its index with the next block's conv0).

A *spec* selects layers: a preset (``all``, ``shape``, ``texture``, ``coarse``, ``middle``,
``fine``), a layer name, a glob (``b8.*``, ``*.torgb``), or a comma-separated mix of these.
Unknown names raise :class:`~nada.errors.ConfigError`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence

from .errors import ConfigError

# Preset → inclusive block-resolution range, after the StyleGAN paper's coarse (4-8), middle
# (16-32) and fine (64+) styles. "shape" is coarse + middle (pose, geometry); "texture" is fine
# (colour scheme, surface detail).
PRESETS: dict[str, tuple[int, int]] = {
    "all": (4, 1 << 30),
    "coarse": (4, 8),
    "middle": (16, 32),
    "fine": (64, 1 << 30),
    "shape": (4, 32),
    "texture": (64, 1 << 30),
}


def _check_resolution(img_resolution: int) -> int:
    if not isinstance(img_resolution, int) or img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ConfigError(f"img_resolution={img_resolution!r} is not a power of two >= 4")
    return int(math.log2(img_resolution))


def layer_names(img_resolution: int) -> list[str]:
    """All styled layers in forward order: ``b4.conv1, b4.torgb, b8.conv0, b8.conv1, b8.torgb, …``."""
    log2 = _check_resolution(img_resolution)
    names = ["b4.conv1", "b4.torgb"]
    for i in range(3, log2 + 1):
        names += [f"b{2**i}.conv0", f"b{2**i}.conv1", f"b{2**i}.torgb"]
    return names


def num_ws(img_resolution: int) -> int:
    """Number of style vectors (W+ rows) of a generator at this resolution."""
    return 2 * _check_resolution(img_resolution) - 2


def block_resolution(name: str) -> int:
    """The block a layer name belongs to, as its resolution: ``b32.torgb`` → 32."""
    return int(name.partition(".")[0][1:])


def w_index(name: str, img_resolution: int) -> int:
    """Style index of one layer name."""
    if name not in layer_names(img_resolution):
        raise ConfigError(
            f"unknown layer name {name!r} for a {img_resolution}px generator",
            f"names look like b4.conv1, b8.conv0, b8.torgb … b{img_resolution}.torgb",
        )
    kind = name.partition(".")[2]
    r = int(math.log2(block_resolution(name)))
    return {"conv0": 2 * r - 5, "conv1": 2 * r - 4, "torgb": 2 * r - 3}[kind]


def layers_for_w_indices(indices: Iterable[int], img_resolution: int) -> list[str]:
    """Layer names driven by any of these style indices (forward order)."""
    wanted = set(int(i) for i in indices)
    n = num_ws(img_resolution)
    bad = sorted(i for i in wanted if not 0 <= i < n)
    if bad:
        raise ConfigError(f"style indices {bad} out of range for a {img_resolution}px generator", f"use 0..{n - 1}")
    return [name for name in layer_names(img_resolution) if w_index(name, img_resolution) in wanted]


def resolve(spec: str | Sequence[str], img_resolution: int) -> list[str]:
    """Layer names (forward order, no duplicates) selected by a spec; see the module docstring."""
    all_names = layer_names(img_resolution)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise ConfigError(f"empty layer selection {spec!r}", f"use a preset ({', '.join(PRESETS)}) or names like b8.*")
    chosen: set[str] = set()
    for item in items:
        if item in PRESETS:
            lo, hi = PRESETS[item]
            hits = [n for n in all_names if lo <= block_resolution(n) <= hi]
        elif any(ch in item for ch in "*?["):
            hits = fnmatch.filter(all_names, item)
        else:
            w_index(item, img_resolution)  # raises ConfigError for unknown names
            hits = [item]
        if not hits:
            raise ConfigError(
                f"layer pattern {item!r} matches nothing in a {img_resolution}px generator",
                f"layers: {all_names[0]} … {all_names[-1]}",
            )
        chosen.update(hits)
    return [n for n in all_names if n in chosen]


def w_indices(spec: str | Sequence[str], img_resolution: int) -> list[int]:
    """Sorted distinct style indices of the layers a spec selects."""
    return sorted({w_index(n, img_resolution) for n in resolve(spec, img_resolution)})


# The latent mapper's levels (StyleCLIP's levels mapper): W+ rows [0, a), [a, b), [b, num_ws)
# where a and b are the style indices of the 16 px and the 64 px blocks' second conv. For a
# 1024 px generator (18 ws) that is 0:4 / 4:8 / 8:18; every generator of 64 px and up splits at
# 4 and 8 (shapes-64: 0:4 / 4:8 / 8:10). Below 64 px the upper levels are empty.
MAPPER_LEVELS = ("coarse", "medium", "fine")
_MAPPER_SPLITS = ("b16.conv1", "b64.conv1")


def mapper_slices(img_resolution: int) -> dict[str, tuple[int, int]]:
    """Level name → half-open W+ row range ``(start, stop)`` for a generator of this size."""
    n = num_ws(img_resolution)
    # w_index's rule, asked at a resolution that has the block, capped at this generator's rows
    cuts = [min(n, w_index(name, max(img_resolution, block_resolution(name)))) for name in _MAPPER_SPLITS]
    bounds = [0, *cuts, n]
    return {level: (bounds[i], bounds[i + 1]) for i, level in enumerate(MAPPER_LEVELS)}
