"""Uploads from the browser: generator checkpoints and style images are checked in full before
anything is kept, then stored content-addressed under ``RUNS/.uploads`` (atomically), so a run's
config.json can name them after the upload's temp file is gone."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import CheckpointError, DataError

log = logging.getLogger(__name__)

GENERATOR_SUFFIXES = (".pt", ".pth", ".pkl", ".safetensors")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_STYLE_IMAGES = 64


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _display(path: str | os.PathLike, shown: str | None = None) -> str:
    return shown or Path(path).name


def check_generator(path: str | os.PathLike, shown: str | None = None) -> str:
    """Load an uploaded checkpoint with ``nada.checkpoints`` (restricted unpickler: no code runs);
    a one-line description, or CheckpointError naming the upload (not the server's temp path)."""
    from ..checkpoints import load_generator

    name = _display(path, shown)
    if Path(name).suffix.lower() not in GENERATOR_SUFFIXES:
        raise CheckpointError(f"uploaded generator {name!r} is not a checkpoint file",
                              f"upload a {', '.join(GENERATOR_SUFFIXES)} file")
    try:
        loaded = load_generator(path, device="cpu")
    except CheckpointError as exc:
        # the loader names the file by its path; the page names it by the visitor's file name
        raise CheckpointError(str(exc).replace(str(path), name).replace(Path(path).name, name)) from None
    G = loaded.generator
    return f"{name}: {loaded.format} StyleGAN2, {G.img_resolution}×{G.img_resolution}, {G.num_ws} styles"


def store_generator(path: str | os.PathLike, uploads_dir: Path) -> Path:
    """Copy a checked checkpoint to ``uploads_dir/<sha256[:16]><suffix>`` (once per content)."""
    src = Path(path)
    dest = uploads_dir / f"{_sha256(src)[:16]}{src.suffix.lower()}"
    if not dest.is_file():
        uploads_dir.mkdir(parents=True, exist_ok=True)
        from ..checkpoints import atomic_write

        atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))
    return dest


def check_style_images(paths: list[str | os.PathLike], shown: list[str] | None = None) -> int:
    """Every upload must decode as an image; DataError names the first that does not."""
    from PIL import Image, UnidentifiedImageError

    if not paths:
        raise DataError("no style images uploaded", "upload a few images of the target style")
    if len(paths) > MAX_STYLE_IMAGES:
        raise DataError(f"{len(paths)} style images; at most {MAX_STYLE_IMAGES}", "upload fewer images")
    for i, path in enumerate(paths):
        name = shown[i] if shown else Path(path).name
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"style image {name!r} is not an image file", f"use {', '.join(IMAGE_SUFFIXES)} files")
        try:
            with Image.open(path) as im:
                im.load()
                if min(im.size) < 8:
                    raise DataError(f"style image {name!r} is only {im.size[0]}×{im.size[1]} pixels",
                                    "use images of at least 8×8")
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
            raise DataError(f"style image {name!r} cannot be read as an image ({type(exc).__name__})",
                            "remove it or upload a PNG/JPEG") from None
    return len(paths)


def store_style_images(paths: list[str | os.PathLike], uploads_dir: Path) -> Path:
    """Copy checked style images into one folder named by their contents (moved in whole)."""
    digests = sorted(_sha256(Path(p)) for p in paths)
    dest = uploads_dir / f"style-{hashlib.sha256(''.join(digests).encode()).hexdigest()[:16]}"
    if dest.is_dir():
        return dest
    uploads_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".style-", dir=uploads_dir))
    try:
        for i, p in enumerate(paths):
            shutil.copyfile(p, tmp / f"{i:03d}{Path(p).suffix.lower()}")
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
