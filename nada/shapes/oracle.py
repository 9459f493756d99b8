"""The shapes-world oracle: a small CNN, independent of CLIP, that reads a 64x64 image and says
its style, shape, colour bucket, centre and size. It is the judge of ``nada eval``.

Trained by ``scripts/train_shapes_oracle.py`` on renders of every style; shipped as
``pretrained/shapes_oracle.safetensors`` + ``shapes_oracle.json`` (the :class:`OracleConfig`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError, one_line
from .renderer import COLOURS, RESOLUTION, SHAPES, STYLES

log = logging.getLogger(__name__)

WEIGHTS_NAME = "shapes_oracle.safetensors"
CONFIG_NAME = "shapes_oracle.json"

# regression targets are normalised as (value - offset) / scale
CENTRE_OFFSET, CENTRE_SCALE = 32.0, 16.0
SIZE_OFFSET, SIZE_SCALE = 15.0, 5.0


@dataclass(frozen=True)
class OracleConfig:
    """Architecture of the oracle CNN (kept small: it trains on 2 shared CPU cores)."""

    channels: tuple[int, ...] = (24, 48, 96)  # widths at 32, 16, 8 px (stem is a 4x4 stride-2 conv)
    bottleneck: int = 32  # 1x1 conv channels before flattening the 8x8 map
    hidden: int = 128  # width of the shared fully connected layer
    resolution: int = RESOLUTION  # input size; other sizes are resized to it

    def __post_init__(self):
        assert len(self.channels) == 3, "three stages: 32, 16, 8 px"


def _conv(cin: int, cout: int, stride: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - stride + 1) // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class OracleNet(nn.Module):
    """Conv stages (stride 2 between them) keep position in a flattened 8x8 map for the centre.

    Heads (raw outputs): ``style`` [N,4], ``shape`` [N,5], ``colour`` [N,6] logits; ``hue`` [N,2]
    (cos, sin, auxiliary); ``centre`` [N,2] and ``size`` [N] normalised (see module constants).
    """

    def __init__(self, cfg: OracleConfig = OracleConfig()):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.features = nn.Sequential(
            _conv(3, c[0], 2, kernel=4),  # 32 px
            _conv(c[0], c[0], 1),
            _conv(c[0], c[1], 2),  # 16 px
            _conv(c[1], c[1], 1),
            _conv(c[1], c[2], 2),  # 8 px
            _conv(c[2], c[2], 1),
            nn.Conv2d(c[2], cfg.bottleneck, 1),
            nn.ReLU(inplace=True),
        )
        side = cfg.resolution // 8
        self.fc = nn.Sequential(nn.Linear(cfg.bottleneck * side * side, cfg.hidden), nn.ReLU(inplace=True))
        self.style = nn.Linear(cfg.hidden, len(STYLES))
        self.shape = nn.Linear(cfg.hidden, len(SHAPES))
        self.colour = nn.Linear(cfg.hidden, len(COLOURS))
        self.hue = nn.Linear(cfg.hidden, 2)
        self.centre = nn.Linear(cfg.hidden, 2)
        self.size = nn.Linear(cfg.hidden, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.fc(self.features(x).flatten(1))
        return {
            "style": self.style(h),
            "shape": self.shape(h),
            "colour": self.colour(h),
            "hue": self.hue(h),
            "centre": self.centre(h),
            "size": self.size(h).squeeze(1),
        }


class Oracle:
    """A trained :class:`OracleNet` in eval mode with a ``predict`` that decodes its heads."""

    def __init__(self, net: OracleNet):
        self.net = net.eval().requires_grad_(False)
        self.cfg = net.cfg

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def predict(self, img: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Judge images ``img`` [N,3,H,W] in [-1,1] (any size: resized to 64).

        Returns, on the input's device: ``style``, ``shape``, ``colour`` (indices into STYLES,
        SHAPES, COLOURS), ``centre`` [N,2] (x, y px), ``size`` [N] (circumradius px),
        ``hue`` [N] (degrees), and ``style_prob`` [N,4] (softmax).
        """
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected images [N,3,H,W], got {tuple(img.shape)}")
        out_device = img.device
        res = self.cfg.resolution
        chunks = []
        for start in range(0, img.shape[0], batch_size):
            x = img[start : start + batch_size].to(self.device, torch.float32)
            if x.shape[-2:] != (res, res):
                x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False, antialias=True)
            chunks.append(self.net(x.clamp(-1, 1)))
        raw = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
        hue = torch.rad2deg(torch.atan2(raw["hue"][:, 1], raw["hue"][:, 0])) % 360.0
        pred = {
            "style": raw["style"].argmax(1),
            "shape": raw["shape"].argmax(1),
            "colour": raw["colour"].argmax(1),
            "centre": raw["centre"] * CENTRE_SCALE + CENTRE_OFFSET,
            "size": raw["size"] * SIZE_SCALE + SIZE_OFFSET,
            "hue": hue,
            "style_prob": raw["style"].softmax(1),
        }
        return {k: v.to(out_device) for k, v in pred.items()}


def save_oracle(net: OracleNet, directory: str | Path) -> Path:
    """Write ``shapes_oracle.safetensors`` + ``shapes_oracle.json`` into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "nada-shapes-oracle"})
    (directory / CONFIG_NAME).write_text(json.dumps(asdict(net.cfg), indent=2) + "\n")
    return directory / WEIGHTS_NAME


def load_oracle(device: str | torch.device | None = None, directory: str | Path | None = None) -> Oracle:
    """The shipped oracle (``pretrained/``, or ``directory``) on ``device`` (default cpu)."""
    from safetensors.torch import load_file

    from ..paths import pretrained_dir

    directory = Path(directory) if directory is not None else pretrained_dir()
    weights, config = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    if not weights.is_file() or not config.is_file():
        raise ModelNotFoundError(
            f"no shapes oracle in {directory} ({WEIGHTS_NAME} + {CONFIG_NAME})",
            "train one with scripts/train_shapes_oracle.py or set NADA_PRETRAINED",
        )
    try:
        raw = json.loads(config.read_text())
        cfg = OracleConfig(**{**raw, "channels": tuple(raw["channels"])})
        net = OracleNet(cfg)
    except Exception as exc:  # noqa: BLE001  (a damaged config: bad JSON, keys or values)
        raise CheckpointError(f"{config}: not a shapes oracle config ({one_line(exc)})",
                              "restore pretrained/ (MANIFEST.json lists the shipped files)") from None
    try:
        net.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as exc:  # noqa: BLE001  (truncated or corrupt weights, or weights of another config)
        raise CheckpointError(f"{weights}: unreadable shapes oracle weights ({one_line(exc)})",
                              "restore pretrained/ (MANIFEST.json lists the shipped files)") from None
    return Oracle(net.to(device if device is not None else "cpu"))
