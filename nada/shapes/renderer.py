"""Procedural 64x64 renders of one shape in one of four visual styles (the shapes world).

Every image is fully determined by its :class:`Factors` and an integer ``seed`` (the seed only
drives nuisance detail: background texture, pencil jitter). Drawing uses Pillow masks at 4x
supersampling, box-downsampled for antialiasing, then numpy compositing.

Factor conventions (all in pixels of the 64x64 image, angles in degrees):

- ``shape``: one of :data:`SHAPES`.
- ``hue`` in [0, 360): our own colour wheel. The six named colours of :data:`COLOURS` sit at the
  centres of six 60 degree buckets; bucket ``k`` is ``[60k, 60k + 60)``, so red is [0, 60),
  orange [60, 120), yellow [120, 180), green [180, 240), blue [240, 300), purple [300, 360).
  Between bucket centres the RGB colour is interpolated linearly (red -> orange -> ... ->
  purple -> red), so hue is continuous and wraps.
- ``cx``, ``cy``: the shape's centre (its centroid), x to the right, y down.
- ``size``: circumradius in pixels (distance from the centre to the farthest outline point).
- ``rotation``: counter-clockwise rotation about the centre.
- ``style``: one of :data:`STYLES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import ConfigError

RESOLUTION = 64
SUPERSAMPLE = 4

STYLES = ("photo", "sketch", "neon", "pixel art")
SHAPES = ("circle", "square", "triangle", "star", "heart")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
STYLES_WITH_COLOUR = ("photo", "neon", "pixel art")

# sampling ranges of random_factors and factors_from_z (px)
CENTRE_RANGE = (22.0, 42.0)
SIZE_RANGE = (10.0, 20.0)

# RGB of each named colour at its bucket centre (hue 30, 90, ..., 330)
_ANCHORS = np.array(
    [
        (215, 30, 35),  # red
        (245, 135, 20),  # orange
        (235, 215, 25),  # yellow
        (40, 165, 55),  # green
        (35, 85, 215),  # blue
        (135, 45, 185),  # purple
    ],
    dtype=np.float32,
)

_PIXEL_BLOCK = 2  # pixel-art block size in px (32x32 art pixels; 4 px made small stars unreadable)


@dataclass(frozen=True)
class Factors:
    """Everything that defines a render except the nuisance seed."""

    shape: str  # one of SHAPES
    hue: float  # degrees on our colour wheel, [0, 360)
    cx: float  # centre x in px
    cy: float  # centre y in px
    size: float  # circumradius in px
    rotation: float = 0.0  # degrees, counter-clockwise
    style: str = "photo"  # one of STYLES

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ConfigError(f"unknown shape {self.shape!r}", f"use one of {', '.join(SHAPES)}")
        if self.style not in STYLES:
            raise ConfigError(f"unknown style {self.style!r}", f"use one of {', '.join(STYLES)}")
        if not 1.0 <= self.size <= RESOLUTION / 2:
            raise ConfigError(f"size {self.size} px is out of range", f"use 1..{RESOLUTION // 2} px")

    @property
    def colour(self) -> int:
        """Index into COLOURS of the hue's 60 degree bucket."""
        return colour_bucket(self.hue)

    def replace(self, **changes) -> "Factors":
        """A copy with some factors changed (e.g. ``f.replace(style='sketch')``)."""
        fields = dict(self.__dict__)
        fields.update(changes)
        return Factors(**fields)


def colour_bucket(hue: float) -> int:
    """The COLOURS index of a hue: bucket k is [60k, 60k + 60) degrees."""
    return int((hue % 360.0) // 60.0) % 6


def hue_to_rgb(hue: float) -> np.ndarray:
    """RGB float32 [3] in 0..255 of a hue on our wheel (linear between bucket-centre anchors)."""
    t = ((hue - 30.0) % 360.0) / 60.0
    i = int(t) % 6
    frac = t - math.floor(t)
    return _ANCHORS[i] * (1.0 - frac) + _ANCHORS[(i + 1) % 6] * frac


def _unit_outline(shape: str) -> np.ndarray:
    """Outline [K,2] of a shape centred on its centroid, circumradius 1, y down, pointing up."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "square":
        t = np.deg2rad([45, 135, 225, 315])
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "triangle":
        t = np.deg2rad([-90, 30, 150])
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "star":
        t = np.deg2rad(-90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif shape == "heart":
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y], 1)
        pts = pts - _polygon_centroid(pts)
    else:
        raise ConfigError(f"unknown shape {shape!r}", f"use one of {', '.join(SHAPES)}")
    pts = pts - _polygon_centroid(pts)
    return (pts / np.linalg.norm(pts, axis=1).max()).astype(np.float64)


def _polygon_centroid(pts: np.ndarray) -> np.ndarray:
    x, y = pts[:, 0], pts[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6 * area)


_OUTLINES = {s: _unit_outline(s) for s in SHAPES}


def shape_outline(f: Factors, jitter: np.ndarray | None = None) -> np.ndarray:
    """Outline [K,2] in image px of ``f``'s shape, rotated, scaled and placed; optional jitter px."""
    pts = _OUTLINES[f.shape]
    a = math.radians(f.rotation)
    c, s = math.cos(a), math.sin(a)
    # counter-clockwise on screen with y pointing down
    rot = np.array([[c, s], [-s, c]])
    out = pts @ rot.T * f.size + np.array([f.cx, f.cy])
    if jitter is not None:
        out = out + jitter
    return out


def _mask(outline: np.ndarray, fill: bool = True, width: float = 0.0) -> np.ndarray:
    """Antialiased coverage float32 [64,64] in 0..1 of a polygon (filled or stroked, width px)."""
    ss = SUPERSAMPLE
    img = Image.new("L", (RESOLUTION * ss, RESOLUTION * ss), 0)
    draw = ImageDraw.Draw(img)
    # pixel centres at (i + 0.5): Pillow coordinates address pixel corners at supersampled scale
    pts = [(float(x * ss - 0.5), float(y * ss - 0.5)) for x, y in outline]
    if fill:
        draw.polygon(pts, fill=255)
    if width > 0:
        w = max(1, int(round(width * ss)))
        draw.line(pts + [pts[0]], fill=255, width=w, joint="curve")
    small = img.reduce(ss)
    return np.asarray(small, dtype=np.float32) * (1.0 / 255.0)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of a float [H,W] map in 0..1 via Pillow (8-bit precision is enough here)."""
    img = Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) * (1.0 / 255.0)


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth noise [64,64] in about -1..1: a cells x cells grid upsampled bilinearly."""
    grid = rng.random((cells, cells), dtype=np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8), "L").resize((RESOLUTION, RESOLUTION), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) * (2.0 / 255.0) - 1.0


_YY, _XX = np.mgrid[0:RESOLUTION, 0:RESOLUTION].astype(np.float32)


def _render_photo(f: Factors, rng: np.random.Generator) -> np.ndarray:
    tint = 232.0 + rng.uniform(-8, 8, size=3).astype(np.float32) * np.array([1.0, 0.6, 1.0], np.float32)
    tex = 5.0 * _smooth_noise(rng, 8) + 2.0 * (rng.random((RESOLUTION, RESOLUTION), dtype=np.float32) - 0.5)
    bg = tint[None, None, :] + tex[:, :, None]
    outline = shape_outline(f)
    mask = _mask(outline)
    shadow = _blur(_mask(outline + np.array([1.5, 2.5])), 2.0)
    bg = bg * (1.0 - 0.35 * shadow[:, :, None])
    # soft shading: light from the top left, brighter near it, darker away
    d = ((_XX - f.cx) * -0.7071 + (_YY - f.cy) * -0.7071) / f.size
    shade = np.clip(1.0 + 0.22 * d, 0.7, 1.25)
    colour = hue_to_rgb(f.hue)
    fill = colour[None, None, :] * shade[:, :, None]
    fill = np.minimum(fill, 255.0)
    m = mask[:, :, None]
    return bg * (1.0 - m) + fill * m


def _render_sketch(f: Factors, rng: np.random.Generator) -> np.ndarray:
    paper = 250.0 + 3.0 * (rng.random((RESOLUTION, RESOLUTION), dtype=np.float32) - 0.5)
    outline = shape_outline(f)
    k = len(outline)
    ink = np.zeros((RESOLUTION, RESOLUTION), np.float32)
    for _ in range(2):  # two slightly different pencil strokes
        jitter = rng.normal(0.0, 0.45, size=(k, 2))
        start = int(rng.integers(k))
        pts = np.roll(shape_outline(f, jitter), -start, axis=0)
        ink = np.maximum(ink, _mask(pts, fill=False, width=1.1) * rng.uniform(0.75, 1.0))
    pencil = np.array([45.0, 45.0, 52.0], np.float32)
    p = paper[:, :, None]
    m = ink[:, :, None]
    return p * (1.0 - m) + pencil[None, None, :] * m


def _render_neon(f: Factors, rng: np.random.Generator) -> np.ndarray:
    r2 = ((_XX - 32) ** 2 + (_YY - 32) ** 2) / (32.0**2)
    base = np.array([14.0, 12.0, 28.0], np.float32) * float(rng.uniform(0.8, 1.2))
    bg = base[None, None, :] * (1.2 - 0.5 * r2)[:, :, None]
    outline = shape_outline(f)
    tube = _mask(outline, fill=False, width=1.6)
    glow = _blur(tube, 2.5)
    colour = hue_to_rgb(f.hue)
    core = colour * 0.55 + 255.0 * 0.45
    img = bg + glow[:, :, None] * colour[None, None, :] * 1.6
    t = tube[:, :, None]
    return img * (1.0 - t) + core[None, None, :] * t


def _render_pixel_art(f: Factors, rng: np.random.Generator) -> np.ndarray:
    b = _PIXEL_BLOCK
    n = RESOLUTION // b
    cover = _mask(shape_outline(f)).reshape(n, b, n, b).mean(axis=(1, 3))
    inside = cover >= 0.5
    grown = inside.copy()
    grown[1:, :] |= inside[:-1, :]
    grown[:-1, :] |= inside[1:, :]
    grown[:, 1:] |= inside[:, :-1]
    grown[:, :-1] |= inside[:, 1:]
    edge = grown & ~inside
    bgs = (
        np.array([200.0, 225.0, 240.0], np.float32),
        np.array([205.0, 235.0, 205.0], np.float32),
        np.array([235.0, 225.0, 200.0], np.float32),
    )
    small = np.empty((n, n, 3), np.float32)
    small[:] = bgs[int(rng.integers(len(bgs)))]
    small[inside] = hue_to_rgb(f.hue)
    small[edge] = (20.0, 20.0, 28.0)
    return np.repeat(np.repeat(small, b, axis=0), b, axis=1)


_STYLE_FNS = {
    "photo": _render_photo,
    "sketch": _render_sketch,
    "neon": _render_neon,
    "pixel art": _render_pixel_art,
}


def render(factors: Factors, seed: int = 0) -> np.ndarray:
    """One uint8 [64,64,3] RGB image of ``factors``; identical for identical (factors, seed)."""
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
    img = _STYLE_FNS[factors.style](factors, rng)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_batch(factors_list: Sequence[Factors], seeds: Sequence[int] | int = 0) -> np.ndarray:
    """uint8 [N,64,64,3] renders; ``seeds`` is one per image, or a base seed (image i gets base + i)."""
    n = len(factors_list)
    if isinstance(seeds, (int, np.integer)):
        seeds = [int(seeds) + i for i in range(n)]
    if len(seeds) != n:
        raise ConfigError(f"got {len(seeds)} seeds for {n} factors", "pass one seed per image or one base seed")
    out = np.empty((n, RESOLUTION, RESOLUTION, 3), np.uint8)
    for i, (f, s) in enumerate(zip(factors_list, seeds)):
        out[i] = render(f, s)
    return out


def random_factors(rng: np.random.Generator, n: int, style: str | None = None) -> list[Factors]:
    """``n`` factors drawn uniformly over every shape, hue, centre, size, rotation (and style,
    unless ``style`` fixes it) from ``rng``."""
    if style is not None and style not in STYLES:
        raise ConfigError(f"unknown style {style!r}", f"use one of {', '.join(STYLES)}")
    shapes = rng.integers(len(SHAPES), size=n)
    styles = rng.integers(len(STYLES), size=n)
    hue = rng.uniform(0, 360, size=n)
    cx = rng.uniform(*CENTRE_RANGE, size=n)
    cy = rng.uniform(*CENTRE_RANGE, size=n)
    size = rng.uniform(*SIZE_RANGE, size=n)
    rot = rng.uniform(0, 360, size=n)
    return [
        Factors(
            shape=SHAPES[shapes[i]],
            hue=float(hue[i]),
            cx=float(cx[i]),
            cy=float(cy[i]),
            size=float(size[i]),
            rotation=float(rot[i]),
            style=style if style is not None else STYLES[styles[i]],
        )
        for i in range(n)
    ]


def to_tensor(images: np.ndarray, device=None):
    """uint8 [N,H,W,3] (or [H,W,3]) -> float32 torch tensor [N,3,H,W] in [-1, 1]."""
    import torch

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ConfigError(f"expected uint8 images [N,H,W,3], got shape {tuple(arr.shape)}", "pass render_batch output")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(images) -> np.ndarray:
    """float tensor [N,3,H,W] in [-1,1] -> uint8 numpy [N,H,W,3] (inverse of :func:`to_tensor`)."""
    import torch

    t = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to("cpu", dtype=torch.uint8)
    return t.permute(0, 2, 3, 1).numpy()


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
    """uint8 [N,H,W,3] -> one uint8 grid image with ``cols`` columns (for looking at renders)."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    grid = np.full((rows * h, cols * w, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = images[i]
    return grid
