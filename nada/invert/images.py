"""Reading user images for inversion: every file checked before any work starts, each problem
one line naming the file (missing, not an image, corrupt, too small); greyscale, palette,
CMYK and RGBA images are converted to RGB with a note."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

log = logging.getLogger(__name__)

MIN_SIDE = 16   # below this no generator output is meaningful


@dataclass
class InputImage:
    """One readable image: RGB pixels and what was done to get them."""

    path: Path
    pixels: np.ndarray                      # uint8 [H, W, 3]
    notes: list[str] = field(default_factory=list)


def min_side_for(resolution: int) -> int:
    """The shortest side accepted for a generator of ``resolution`` px: a quarter of it (more
    up-scaling than 4x only invents blur), at least :data:`MIN_SIDE`."""
    return max(MIN_SIDE, resolution // 4)


def read_image(path: str | os.PathLike, min_side: int = MIN_SIDE) -> InputImage:
    """Open, fully decode and convert one image; DataError (one line) when it cannot be used."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise DataError(f"image {str(path)!r} does not exist", "check the path")
    if not p.is_file():
        raise DataError(f"image {str(path)!r} is not a file", "pass image files (PNG, JPEG, ...)")
    notes: list[str] = []
    try:
        with Image.open(p) as im:
            if getattr(im, "n_frames", 1) > 1:
                notes.append(f"{im.n_frames} frames: using the first")
            im.load()  # decode now: a truncated file fails here, not half way through the work
            im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba).convert("RGB")
                notes.append(f"{mode} with transparency: composited on white")
            elif mode != "RGB":
                im = im.convert("RGB")
                kind = "greyscale" if mode in ("1", "L", "I", "I;16", "F") else mode
                notes.append(f"{kind} image converted to RGB")
            pixels = np.asarray(im, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise DataError(f"{p} is not an image (Pillow cannot identify it)", "pass PNG, JPEG, WebP, ... files") from None
    except (OSError, SyntaxError, ValueError) as exc:
        from ..errors import one_line

        raise DataError(f"{p} is a corrupt or truncated image ({one_line(exc)})", "re-export or re-download it") from None
    h, w = pixels.shape[:2]
    if min(h, w) < min_side:
        raise DataError(f"{p} is {w}x{h} px, too small", f"the shortest side must be at least {min_side} px")
    for note in notes:
        log.warning("%s: %s", p.name, note)
    return InputImage(p, pixels, notes)


def read_images(paths: list[str], min_side: int = MIN_SIDE) -> list[InputImage]:
    """Every image read and checked first; one DataError listing each unusable file."""
    if not paths:
        raise DataError("no images given", "pass one or more image files")
    good, bad = [], []
    for path in paths:
        try:
            good.append(read_image(path, min_side))
        except DataError as exc:
            bad.append(str(exc))
    if len(bad) == 1:
        raise DataError(bad[0])
    if bad:
        raise DataError(f"{len(bad)} images cannot be used: " + "; ".join(bad))
    return good


def centre_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square, resized to ``size`` (Lanczos): uint8 [size, size, 3]."""
    from PIL import Image

    h, w = pixels.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = Image.fromarray(pixels[top : top + s, left : left + s])
    if s != size:
        sq = sq.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(sq, dtype=np.uint8)


def to_tensor(pixels: list[np.ndarray] | np.ndarray, device=None) -> torch.Tensor:
    """uint8 [N, H, W, 3] (or a list of [H, W, 3]) → float [N, 3, H, W] in [-1, 1]."""
    arr = np.stack(pixels) if isinstance(pixels, list) else np.asarray(pixels)
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
