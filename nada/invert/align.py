"""Bringing an input image into the generator's framing.

``crop``: the centred square, resized. ``face``: FFHQ-style alignment (the FFHQ dataset's rule:
an oriented square from the eye and mouth landmarks of dlib's 68-point model) when the optional
``dlib`` package and its landmark file (``nada download dlib-landmarks-68``) are here; otherwise
the centre crop with one warning line. ``auto``: ``face`` for face generators (FFHQ, MetFaces),
``crop`` for everything else (the shapes world)."""

from __future__ import annotations

import bz2
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .images import centre_crop

log = logging.getLogger(__name__)

ALIGN_MODES = ("auto", "face", "crop")
LANDMARKS_NAME = "dlib-landmarks-68"
_FACE_WORDS = ("ffhq", "metfaces", "celeba", "face")


def resolve_mode(mode: str, generator_spec: str | os.PathLike | None) -> str:
    """``auto`` → ``face`` when the generator's spec (name or path) says faces, else ``crop``."""
    if mode not in ALIGN_MODES:
        raise ConfigError(f"unknown alignment {mode!r}", f"use one of {', '.join(ALIGN_MODES)}")
    if mode != "auto":
        return mode
    name = str(generator_spec or "shapes").lower()
    return "face" if any(w in name for w in _FACE_WORDS) else "crop"


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The oriented crop square [4, 2] (x, y; corners top-left, bottom-left, bottom-right,
    top-right) of 68 face landmarks [68, 2], by the FFHQ rule: centred a little below the eyes'
    midpoint towards the mouth, side from the larger of 2x the eye distance and 1.8x the
    eye-to-mouth distance, rotated with the eye-to-mouth axis."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2], got {lm.shape}")
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # eye axis and mouth axis turned 90°
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def warp_quad(pixels: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """The quad of ``pixels`` mapped onto a ``size`` square (bilinear; outside is edge-padded)."""
    from PIL import Image

    h, w = pixels.shape[:2]
    pad = int(np.ceil(max(0.0, -quad.min(), quad[:, 0].max() - w, quad[:, 1].max() - h))) + 1
    padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    q = (quad + pad).flatten().tolist()
    side = int(np.ceil(np.hypot(*(quad[3] - quad[0]))))
    im = Image.fromarray(padded).transform((side, side), Image.Transform.QUAD, q, Image.Resampling.BILINEAR)
    return np.asarray(im.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def landmarks_file() -> Path | None:
    """The decompressed dlib landmark model in the weights cache (decompressed once from the
    downloaded .bz2), or None."""
    from .. import hub, paths
    from ..checkpoints import atomic_write

    cache = paths.weights_cache_dir()
    packed = cache / hub.AUXILIARY[LANDMARKS_NAME].filename
    dat = packed.with_suffix("")  # .dat
    if dat.is_file():
        return dat
    if not packed.is_file():
        return None

    def unpack(tmp: str) -> None:
        with bz2.open(packed, "rb") as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)

    atomic_write(dat, unpack)
    return dat


def _face_landmarks(pixels: np.ndarray, path: Path) -> np.ndarray | None:
    import dlib  # optional; the caller checked it imports

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(path))
    faces = detector(pixels, 1)
    if not faces:
        return None
    face = max(faces, key=lambda r: r.width() * r.height())
    shape = predictor(pixels, face)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def align(pixels: np.ndarray, size: int, mode: str, name: str = "image") -> tuple[np.ndarray, str]:
    """``(uint8 [size, size, 3], what was done)`` for ``mode`` ``face`` or ``crop``."""
    if mode == "crop":
        return centre_crop(pixels, size), "centre crop"
    if mode != "face":
        raise ConfigError(f"unknown alignment {mode!r}", "use face or crop")
    try:
        import dlib  # noqa: F401
    except ImportError:
        log.warning("face alignment needs dlib (pip install dlib): %s centre-cropped instead", name)
        return centre_crop(pixels, size), "centre crop (no dlib)"
    path = landmarks_file()
    if path is None:
        log.warning("face alignment needs the landmark model (nada download %s): %s centre-cropped instead",
                    LANDMARKS_NAME, name)
        return centre_crop(pixels, size), "centre crop (no landmark model)"
    lm = _face_landmarks(pixels, path)
    if lm is None:
        raise DataError(f"{name}: no face found for alignment", "pass a photo with a visible face, or --align crop")
    return warp_quad(pixels, ffhq_quad(lm), size), "FFHQ alignment (dlib 68 landmarks)"
