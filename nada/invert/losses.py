"""Reconstruction losses for inversion: an LPIPS-style VGG16 distance when its weights are here,
else a pixel + multi-scale pixel loss (optionally plus CLIP image-feature similarity).

LPIPS (Zhang et al. 2018) compares unit-normalised VGG16 activations at five depths, weighted
per channel by small linear heads. The heads ship inside the ``lpips`` package
(``lpips/weights/v0.1/vgg.pth``); the VGG16 backbone is torchvision's ImageNet checkpoint, which
``nada download vgg16-imagenet`` fetches into the weights cache (checked by sha256). Nothing is
downloaded behind the user's back: without the backbone, ``loss='auto'`` falls back to pixels
with one log line, and ``loss='lpips'`` is a one-line error naming that command.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelNotFoundError

log = logging.getLogger(__name__)

VGG16_NAME = "vgg16-imagenet"   # nada.hub.AUXILIARY entry of torchvision's vgg16-397923af.pth
LOSS_KINDS = ("auto", "lpips", "pixel")

# LPIPS input scaling of images in [-1, 1] (the lpips package's ScalingLayer constants)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# torchvision vgg16.features indices whose ReLU outputs LPIPS reads: relu1_2 … relu5_3
_TAPS = (3, 8, 15, 22, 29)
_TAP_CHANNELS = (64, 128, 256, 512, 512)


def vgg16_path() -> Path | None:
    """The cached VGG16 backbone file, or None when it has not been downloaded."""
    from .. import hub, paths

    path = paths.weights_cache_dir() / hub.AUXILIARY[VGG16_NAME].filename
    return path if path.is_file() else None


def lpips_heads_path() -> Path | None:
    """``vgg.pth`` of the installed ``lpips`` package (the five linear heads), or None."""
    try:
        import lpips
    except ImportError:
        return None
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    return path if path.is_file() else None


class LPIPSVGG(nn.Module):
    """LPIPS distance with a VGG16 trunk: ``forward(x, y) -> [N]`` for images in [-1, 1].

    Images smaller than 64 px or larger than 256 px are resized to 256 first (as NVIDIA's
    projector does for its VGG metric), so the deepest tap still sees several positions."""

    def __init__(self, backbone_state: dict[str, torch.Tensor], heads_state: dict[str, torch.Tensor]):
        super().__init__()
        from torchvision.models import vgg16

        trunk = vgg16().features[: _TAPS[-1] + 1]
        missing = [k for k in trunk.state_dict() if f"features.{k}" not in backbone_state]
        if missing:
            raise ModelNotFoundError(f"VGG16 weights lack {missing[:3]}", f"run `nada download {VGG16_NAME}` again")
        trunk.load_state_dict({k: backbone_state[f"features.{k}"] for k in trunk.state_dict()})
        self.trunk = trunk.eval().requires_grad_(False)
        self.heads = nn.ParameterList()
        for i, ch in enumerate(_TAP_CHANNELS):
            w = heads_state.get(f"lin{i}.model.1.weight")
            if w is None or tuple(w.shape) != (1, ch, 1, 1):
                raise ModelNotFoundError(f"lpips head lin{i} missing or of the wrong shape", "reinstall lpips")
            self.heads.append(nn.Parameter(w.detach().float().clone(), requires_grad=False))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] > 256 or x.shape[-1] < 64:
            x = F.interpolate(x, size=(256, 256), mode="area" if x.shape[-1] > 256 else "bilinear")
        h = (x - self.shift) / self.scale
        taps = []
        for i, layer in enumerate(self.trunk):
            h = layer(h)
            if i in _TAPS:
                taps.append(h)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(x.shape[0])
        for fx, fy, w in zip(self._features(x), self._features(y), self.heads):
            nx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + F.conv2d((nx - ny).square(), w).mean(dim=(1, 2, 3))
        return total


def load_lpips(device: torch.device | str | None = None) -> LPIPSVGG:
    """The LPIPS VGG distance; ModelNotFoundError (one line, with the command) when the backbone
    or the heads are missing. Both files load with ``torch.load(weights_only=True)``."""
    backbone = vgg16_path()
    if backbone is None:
        raise ModelNotFoundError("the VGG16 weights of the LPIPS loss are not in the weights cache",
                                 f"run `nada download {VGG16_NAME}` on a connected machine, or use --loss pixel")
    heads = lpips_heads_path()
    if heads is None:
        raise ModelNotFoundError("the lpips package (its linear heads) is not installed", "pip install lpips")
    try:
        b = torch.load(backbone, map_location="cpu", weights_only=True)
        h = torch.load(heads, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (a damaged file is one line, whatever torch raised)
        from ..errors import one_line

        raise ModelNotFoundError(f"cannot read LPIPS weights: {one_line(exc)}",
                                 f"delete {backbone} and run `nada download {VGG16_NAME}`") from None
    return LPIPSVGG(b, h).to(device)


class PixelLoss(nn.Module):
    """Mean squared error at full size plus at 1/2, 1/4, … (average-pooled) down to ``min_size``:
    the coarse terms pull position, size and colour in from afar, the fine term sharpens.
    ``forward(x, y) -> [N]``."""

    def __init__(self, scales: int = 4, min_size: int = 4):
        super().__init__()
        self.scales = scales
        self.min_size = min_size

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = (x - y).square().mean(dim=(1, 2, 3))
        for _ in range(self.scales - 1):
            if x.shape[-1] // 2 < self.min_size:
                break
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            total = total + (x - y).square().mean(dim=(1, 2, 3))
        return total


class ClipFeatureLoss(nn.Module):
    """1 − cosine between CLIP image embeddings of ``x`` and ``y``: ``forward(x, y) -> [N]``."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = F.normalize(self.encoder.encode_image(x), dim=-1)
        fy = F.normalize(self.encoder.encode_image(y), dim=-1)
        return 1.0 - (fx * fy).sum(-1)


class ReconstructionLoss(nn.Module):
    """A weighted sum of per-image distances, ``forward(x, y) -> [N]``; ``name`` says which
    loss it is (recorded with every inversion)."""

    def __init__(self, terms: Sequence[tuple[str, nn.Module, float]]):
        super().__init__()
        self.names = [n for n, _, _ in terms]
        self.weights = [float(w) for _, _, w in terms]
        self.terms = nn.ModuleList([m for _, m, _ in terms])

    @property
    def name(self) -> str:
        return " + ".join(n if w == 1 else f"{w:g}·{n}" for n, w in zip(self.names, self.weights))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum(w * m(x, y) for m, w in zip(self.terms, self.weights))

    @torch.no_grad()
    def parts(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term's unweighted distance [N], by name (what metrics.json reports)."""
        return {n: m(x, y) for n, m in zip(self.names, self.terms)}


def build_loss(
    kind: str = "auto",                     # auto | lpips | pixel
    device: torch.device | str | None = None,
    clip=None,                              # a nada.guidance ClipEncoder for the CLIP term, or None
    clip_weight: float = 0.0,               # weight of 1 − cos(CLIP(x), CLIP(y))
) -> ReconstructionLoss:
    """The reconstruction loss of an inversion. ``auto``: LPIPS when its weights are here, else
    pixel + multi-scale pixel (with a one-line note)."""
    if kind not in LOSS_KINDS:
        raise ConfigError(f"unknown loss {kind!r}", f"use one of {', '.join(LOSS_KINDS)}")
    terms: list[tuple[str, nn.Module, float]] = []
    if kind in ("auto", "lpips"):
        if kind == "lpips" or (vgg16_path() is not None and lpips_heads_path() is not None):
            terms.append(("lpips-vgg16", load_lpips(device), 1.0))
        else:
            log.info("LPIPS VGG16 weights not cached (`nada download %s` fetches them): "
                     "using the pixel + multi-scale pixel loss", VGG16_NAME)
    if not terms:
        terms.append(("pixel-multiscale", PixelLoss(), 1.0))
    if clip_weight > 0:
        if clip is None:
            raise ConfigError("a CLIP weight was given without a CLIP model", "pass --clip SPEC, or drop --clip-weight")
        terms.append((f"clip[{clip.spec}]", ClipFeatureLoss(clip), clip_weight))
    return ReconstructionLoss(terms).to(device)
