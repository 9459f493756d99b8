"""The e4e encoder ("Designing an Encoder for StyleGAN Image Manipulation", Tov et al. 2021),
written here from the paper and the layout of its released checkpoints.

Architecture (``Encoder4Editing``): an IR-SE50 backbone (ArcFace's improved residual units
with squeeze-excitation; stages of 3, 4, 14 and 3 units at 64, 128, 256, 512 channels, each
stage halving the size) reads a 256 px image in [-1, 1]. Three feature maps feed a small
feature pyramid: the 16 px map of the last stage (coarse), that map up-sampled and added to a
1x1 projection of the 32 px map (medium), and that sum up-sampled and added to a projection of
the 64 px map (fine). One "map2style" block per W+ row (stride-2 convs down to 1x1, then an
equalised linear layer) turns a map into a 512-d code: row 0 from the coarse map is the base
``w``, every other row adds its delta to it (rows 1-2 coarse, 3-6 medium, 7+ fine), and the
checkpoint's ``latent_avg`` is added last. ``progressive_stage`` limits how many deltas run
(e4e trains them in that order).

Checkpoint (``e4e_ffhq_encode.pt``): a torch zip pickle ``{"state_dict", "opts", "latent_avg"}``
whose ``encoder.*`` keys are this module's state dict; it is read by ``torch.load(weights_only=True)``
(plain tensors, dicts and numbers: no pickled code runs) and every key and shape is checked.
``width`` scales every channel count (1.0 = the released layout); tests use a narrow one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, one_line

STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))   # IR-SE50: (channels, units) per stage
COARSE_ROWS, MEDIUM_ROWS = 3, 7                     # rows < 3 coarse, < 7 medium, the rest fine
INPUT_SIZE = 256


def _ch(c: int, width: float) -> int:
    return max(1, round(c * width))


class SqueezeExcite(nn.Module):
    """Channel gates from global average pooling: 1x1 conv down by ``reduction``, ReLU, 1x1 up, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, max(1, channels // reduction), 1, bias=False)
        self.fc2 = nn.Conv2d(max(1, channels // reduction), channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(g))))


class IRSEUnit(nn.Module):
    """Improved residual unit: BN, 3x3 conv, PReLU, 3x3 conv (carries the stride), BN, SE;
    the shortcut is a strided 1x1 conv + BN when the channels change, else a strided identity."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            SqueezeExcite(cout, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """rosinality's equalised-learning-rate linear layer (``lr_mul`` 1 here): the weight is
    scaled by 1/sqrt(in) at run time."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = 1.0 / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class MapToStyle(nn.Module):
    """A feature map of side ``spatial`` → one code: log2(spatial) stride-2 3x3 convs with
    leaky ReLU down to 1x1, then an equalised linear layer."""

    def __init__(self, channels: int, out_dim: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, out_dim, 3, 2, 1), nn.LeakyReLU()]
            channels = out_dim
        self.convs = nn.Sequential(*layers)
        self.out_dim = out_dim
        self.linear = EqualLinear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class Encoder4Editing(nn.Module):
    """256 px image [N, 3, 256, 256] in [-1, 1] → W+ codes [N, num_ws, w_dim] (before
    ``latent_avg``, which :class:`E4E` adds)."""

    def __init__(self, num_ws: int = 18, w_dim: int = 512, width: float = 1.0):
        super().__init__()
        self.num_ws = num_ws
        self.w_dim = w_dim
        c0 = _ch(64, width)
        self.input_layer = nn.Sequential(nn.Conv2d(3, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.PReLU(c0))
        units: list[nn.Module] = []
        cin = c0
        self.taps = []  # indices of the body units after which the 64, 32 and 16 px maps are read
        for cout, n in STAGES:
            cout = _ch(cout, width)
            for i in range(n):
                units.append(IRSEUnit(cin, cout, 2 if i == 0 else 1))
                cin = cout
            self.taps.append(len(units) - 1)
        self.body = nn.Sequential(*units)
        c_fine, c_mid, c_top = _ch(128, width), _ch(256, width), _ch(512, width)
        self.styles = nn.ModuleList(
            [MapToStyle(c_top, w_dim, 16 if i < COARSE_ROWS else 32 if i < MEDIUM_ROWS else 64) for i in range(num_ws)]
        )
        self.latlayer1 = nn.Conv2d(c_mid, c_top, 1)
        self.latlayer2 = nn.Conv2d(c_fine, c_top, 1)
        self.progressive_stage = num_ws  # deltas of rows < stage are added (all, at inference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"e4e reads {INPUT_SIZE}px images, got {list(x.shape)}")
        x = self.input_layer(x)
        maps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            maps[i] = x
        c_fine, c_mid, c_top = (maps[self.taps[1]], maps[self.taps[2]], maps[self.taps[3]])
        w0 = self.styles[0](c_top)
        rows = [w0]
        features = c_top
        medium = None
        for i in range(1, self.num_ws):
            if i >= self.progressive_stage:
                rows.append(w0)
                continue
            if i == COARSE_ROWS:
                medium = _upsample_add(c_top, self.latlayer1(c_mid))
                features = medium
            elif i == MEDIUM_ROWS:
                features = _upsample_add(medium, self.latlayer2(c_fine))
            rows.append(w0 + self.styles[i](features))
        return torch.stack(rows, dim=1)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x`` bilinearly resized to ``y``'s size, plus ``y`` (the pyramid's merge)."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class E4E(nn.Module):
    """An e4e encoder with its ``latent_avg``: ``forward(img in [-1, 1], any size) -> ws``."""

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor, opts: dict | None = None):
        super().__init__()
        self.encoder = encoder
        avg = latent_avg.detach().float()
        avg = avg[None].expand(encoder.num_ws, -1) if avg.ndim == 1 else avg
        self.register_buffer("latent_avg", avg.clone())  # [num_ws, w_dim]
        self.opts = dict(opts or {})

    @torch.no_grad()
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.to(self.latent_avg.device, torch.float32)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        return self.encoder(x) + self.latent_avg[None]


def num_ws_for(resolution: int) -> int:
    return 2 * int(math.log2(resolution)) - 2


def state_dict_for_checkpoint(model: E4E) -> dict:
    """What a released checkpoint holds: ``state_dict`` (``encoder.*`` keys), ``latent_avg``, ``opts``."""
    sd = {f"encoder.{k}": v.detach().cpu() for k, v in model.encoder.state_dict().items()}
    return {"state_dict": sd, "latent_avg": model.latent_avg.detach().cpu(), "opts": dict(model.opts)}


def load_e4e(path: str | os.PathLike, device: torch.device | str | None = None) -> E4E:
    """Read an e4e checkpoint safely (weights-only) and build the encoder; CheckpointError (one
    line) for an unreadable file, a missing/unexpected key or a wrong shape. The width comes from
    the first conv (64 channels = the released layout)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"encoder {str(path)!r} does not exist", "pass the e4e checkpoint file (e4e_ffhq_encode.pt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickled code, a damaged zip, not a torch file: all one line)
        raise CheckpointError(f"{p} is not a loadable e4e checkpoint ({one_line(exc)})",
                              "pass e4e's released .pt file; nada never runs pickled code") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{p} has no 'state_dict'", "pass an e4e checkpoint ({'state_dict', 'opts', ...})")
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), dict) else {}
    enc_sd = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    if not enc_sd:
        raise CheckpointError(f"{p}: no 'encoder.*' weights in its state_dict", "pass an e4e checkpoint")
    if opts.get("encoder_type", "Encoder4Editing") != "Encoder4Editing":
        raise CheckpointError(f"{p}: encoder_type {opts.get('encoder_type')!r}", "only Encoder4Editing is supported")
    num_ws = len({k.split(".")[1] for k in enc_sd if k.startswith("styles.")})
    w_dim = enc_sd.get("styles.0.linear.weight", torch.empty(512, 0)).shape[0]
    size = opts.get("stylegan_size")
    if size is not None and num_ws_for(int(size)) != num_ws:
        raise CheckpointError(f"{p}: {num_ws} style blocks but stylegan_size {size}", "the checkpoint is damaged")
    first = enc_sd.get("input_layer.0.weight")
    width = first.shape[0] / 64 if isinstance(first, torch.Tensor) and first.ndim == 4 else 1.0
    model = Encoder4Editing(num_ws, w_dim, width)
    want = model.state_dict()
    missing = sorted(k for k in set(want) - set(enc_sd) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(enc_sd) - set(want))
    if missing or unexpected:
        raise CheckpointError(f"{p}: e4e key layout differs (missing {missing[:3]}, unexpected {unexpected[:3]})",
                              "pass an Encoder4Editing checkpoint")
    bad = [k for k in want if tuple(want[k].shape) != tuple(enc_sd[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{p}: {k} has shape {list(enc_sd[k].shape)}, expected {list(want[k].shape)}",
                              "the checkpoint is damaged or of another width")
    model.load_state_dict(enc_sd, strict=False)  # only num_batches_tracked may be absent (checked above)
    latent_avg = ckpt.get("latent_avg")
    if not isinstance(latent_avg, torch.Tensor) or tuple(latent_avg.shape) not in ((w_dim,), (num_ws, w_dim)):
        raise CheckpointError(f"{p}: no latent_avg of shape [{w_dim}] or [{num_ws}, {w_dim}]",
                              "pass an e4e checkpoint trained with start_from_latent_avg")
    if not all(torch.isfinite(v).all() for v in enc_sd.values() if v.is_floating_point()):
        raise CheckpointError(f"{p}: non-finite weights", "the checkpoint is damaged")
    return E4E(model.eval().requires_grad_(False), latent_avg, opts).to(device)
