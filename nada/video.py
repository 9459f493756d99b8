"""Videos: cross-domain morphs (synthesis weights blended frozen → adapted₁ → adapted₂ → …) and
latent walks (slerp in Z or lerp in W between keyframes), streamed frame by frame to an MP4
(imageio-ffmpeg's bundled ffmpeg) or a GIF (Pillow).

Frames are produced by generators, one at a time; the MP4 writer takes each as it comes, so a
long video never sits in memory. Pillow's GIF writer keeps the palette frames (1 byte a pixel)
until it closes: GIFs are meant for short clips."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .networks.sampling import image_grid, to_uint8

FORMATS = (".mp4", ".gif")
WALK_SPACES = ("z", "w")
MACRO_BLOCK = 16  # H.264 wants frame sides divisible by this: frames are padded to it


@dataclass(frozen=True)
class VideoConfig:
    """How frames are laid out, timed and encoded."""

    frames: int = 60            # frames in the whole video
    fps: int = 24               # frames per second
    size: int = 128             # side of one image cell in px (generator output resized, nearest when enlarging)
    loop: bool = False          # morph back to the first generator / walk back to the first keyframe
    cols: int | None = None     # morph: grid columns of the latents (default ~sqrt N)
    pad: int = 2                # px between cells
    quality: int = 7            # MP4 quality 0-10 (imageio-ffmpeg)

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 2:
            raise ConfigError(f"frames={self.frames!r} must be an integer >= 2")
        if not isinstance(self.fps, int) or not 1 <= self.fps <= 120:
            raise ConfigError(f"fps={self.fps!r} must be an integer in [1, 120]")
        if not isinstance(self.size, int) or not 16 <= self.size <= 2048:
            raise ConfigError(f"size={self.size!r} must be an integer in [16, 2048] px")
        if self.cols is not None and self.cols < 1:
            raise ConfigError(f"cols={self.cols!r} must be >= 1")
        if not 0 <= self.quality <= 10:
            raise ConfigError(f"quality={self.quality!r} must be in [0, 10]")


def timeline(frames: int, segments: int, loop: bool) -> list[tuple[int, float]]:
    """``(segment, alpha)`` of each frame: evenly spaced over ``segments`` transitions, the first
    frame at (0, 0.0); the last at (segments-1, 1.0), or just before the loop's start again."""
    if segments < 1:
        raise ConfigError("a video needs at least two keyframes (generators or latents)")
    out = []
    for i in range(frames):
        t = i * segments / (frames if loop else frames - 1)
        k = min(math.floor(t), segments - 1)
        out.append((k, float(t - k)))
    return out


@torch.no_grad()
def blend_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``lerp(a, b, alpha)`` of every floating tensor (others from ``b``)."""
    return {k: torch.lerp(a[k], b[k], alpha) if a[k].is_floating_point() else b[k] for k in a}


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if images.shape[1] == size:
        return images
    mode = Image.Resampling.NEAREST if size > images.shape[1] else Image.Resampling.LANCZOS
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), mode)) for im in images])


def _pad_to_block(frame: np.ndarray, block: int) -> np.ndarray:
    h, w = frame.shape[:2]
    H, W = -(-h // block) * block, -(-w // block) * block
    if (H, W) == (h, w):
        return frame
    out = np.full((H, W, 3), 255, np.uint8)
    out[(H - h) // 2 : (H - h) // 2 + h, (W - w) // 2 : (W - w) // 2 + w] = frame
    return out


def _render(G, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None) -> np.ndarray:
    dev = G.mapping.w_avg.device
    nz = {k: v.to(dev) for k, v in noise.items()} if noise else None
    return to_uint8(G.synthesis(ws.to(dev), noise_mode="const", noise=nz))


@torch.no_grad()
def morph_frames(
    generators: Sequence,                   # [G0, G1, ...] of one architecture (G0 usually the frozen one)
    ws: torch.Tensor,                       # [N, num_ws, w_dim] the latents shown
    cfg: VideoConfig,
    noise: dict[str, torch.Tensor] | None = None,  # noise maps per latent (an inversion's), else const
) -> Iterator[np.ndarray]:
    """Frames of the weight morph G0 → G1 → … (→ G0 with ``loop``): frame i renders ``ws`` with
    synthesis weights ``lerp(G_k, G_k+1, alpha_i)``; mapping and w_avg are G0's. Each frame is a
    grid of the N latents."""
    keys = list(generators) + ([generators[0]] if cfg.loop else [])
    states = [g.synthesis.state_dict() for g in keys]
    if any(s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s) for s in states):
        raise ConfigError("the generators of a morph differ in architecture", "morph runs of one source generator")
    work = copy.deepcopy(generators[0])
    cols = cfg.cols or math.ceil(math.sqrt(ws.shape[0]))
    for k, alpha in timeline(cfg.frames, len(keys) - 1, cfg.loop):
        work.synthesis.load_state_dict(blend_state(states[k], states[k + 1], alpha))
        yield image_grid(_resize(_render(work, ws, noise), cfg.size), cols=cols, pad=cfg.pad)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of rows of ``a`` and ``b`` (norms interpolated linearly)."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    u = (torch.sin((1 - t) * omega) / so) * ua + (torch.sin(t * omega) / so) * ub
    return u * torch.lerp(na, nb, t)


@torch.no_grad()
def walk_frames(
    generators: Sequence,                   # columns side by side (frozen + adapted runs)
    keys: torch.Tensor,                     # [K, z_dim] (space z) or [K, num_ws, w_dim] (space w)
    space: str,                             # z: slerp in Z, then map; w: lerp in W (W+)
    cfg: VideoConfig,
    truncation: float = 1.0,                # for z keyframes
) -> Iterator[np.ndarray]:
    """Frames of a latent walk through the keyframes (and back with ``loop``), the same latent
    rendered by every generator, side by side."""
    if space not in WALK_SPACES:
        raise ConfigError(f"unknown walk space {space!r}", f"use one of {', '.join(WALK_SPACES)}")
    ks = torch.cat([keys, keys[:1]]) if cfg.loop else keys
    G0 = generators[0]
    dev = G0.mapping.w_avg.device
    for k, alpha in timeline(cfg.frames, ks.shape[0] - 1, cfg.loop):
        if space == "z":
            ws = G0.mapping(slerp(ks[k : k + 1], ks[k + 1 : k + 2], alpha).to(dev), truncation)
        else:
            ws = torch.lerp(ks[k : k + 1], ks[k + 1 : k + 2], alpha).to(dev)
        row = np.concatenate([_resize(_render(G, ws, None), cfg.size) for G in generators])
        yield image_grid(row, cols=len(generators), pad=cfg.pad)


def write_video(path: str | os.PathLike, frames: Iterator[np.ndarray], cfg: VideoConfig, total: int | None = None,
                progress: bool = True) -> dict:
    """Encode ``frames`` (uint8 [H, W, 3], one size) into ``path`` (.mp4 or .gif), atomically
    (a temp file renamed into place); returns ``{frames, width, height, seconds, bytes}``."""
    import time

    from tqdm import tqdm

    from .checkpoints import atomic_write

    p = Path(path)
    ext = p.suffix.lower()
    if ext not in FORMATS:
        raise ConfigError(f"cannot tell the video format of {p.name}", "name the output .mp4 or .gif")
    info = {"frames": 0, "width": 0, "height": 0}
    start = time.perf_counter()
    bar = tqdm(total=total or cfg.frames, desc="nada video", unit="frame", disable=not progress)

    def encode_mp4(tmp: str) -> None:
        try:
            import imageio_ffmpeg
        except ImportError:
            raise ConfigError("MP4 output needs imageio-ffmpeg", "pip install imageio-ffmpeg, or write a .gif") from None
        writer = None
        try:
            for frame in frames:
                frame = _pad_to_block(frame, MACRO_BLOCK)
                if writer is None:
                    info["height"], info["width"] = frame.shape[:2]
                    writer = imageio_ffmpeg.write_frames(
                        tmp, (info["width"], info["height"]), fps=cfg.fps, quality=cfg.quality, codec="libx264",
                        macro_block_size=MACRO_BLOCK, output_params=["-f", "mp4"], ffmpeg_log_level="error")
                    writer.send(None)
                writer.send(np.ascontiguousarray(frame))
                info["frames"] += 1
                bar.update(1)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ConfigError("the video has no frames", "give at least two frames")

    def encode_gif(tmp: str) -> None:
        from PIL import Image

        def palettes():
            for frame in frames:
                info["height"], info["width"] = frame.shape[:2]
                info["frames"] += 1
                bar.update(1)
                yield Image.fromarray(frame).quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)

        it = palettes()
        first = next(it, None)
        if first is None:
            raise ConfigError("the video has no frames", "give at least two frames")
        first.save(tmp, format="GIF", save_all=True, append_images=it, duration=round(1000 / cfg.fps),
                   loop=0, optimize=False, disposal=1)

    try:
        atomic_write(p, encode_mp4 if ext == ".mp4" else encode_gif)
    finally:
        bar.close()
    info["seconds"] = time.perf_counter() - start
    info["bytes"] = p.stat().st_size
    return info


def read_video(path: str | os.PathLike) -> tuple[int, tuple[int, int]]:
    """``(frame count, (width, height))`` of a video, decoded frame by frame with imageio."""
    import imageio.v2 as imageio

    n, size = 0, None
    fmt = "FFMPEG" if Path(path).suffix.lower() == ".mp4" else "GIF-PIL"
    with imageio.get_reader(str(path), format=fmt) as reader:
        for frame in reader:
            n += 1
            size = (frame.shape[1], frame.shape[0])
    return n, size
