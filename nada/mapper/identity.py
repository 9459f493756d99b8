"""The identity loss of face mappers: cosine distance between ArcFace embeddings (IR-SE50, the
network StyleCLIP and StyleGAN-NADA use) of the unedited and the edited image.

The architecture is written here to match the published ``model_ir_se50.pth`` state dict key
for key; the file is read with torch's weights-only loader, so no pickled code runs."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError

IR_SE50_STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))  # (channels, units) of the four stages
FACE_CROP = (35, 223, 32, 220)  # rows, cols of the face in a 256² aligned FFHQ image (StyleCLIP's crop)


class SqueezeExcite(nn.Module):
    """Channel gating: global average → 1×1 conv down by 16 → ReLU → 1×1 conv up → sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * g


class IRSEUnit(nn.Module):
    """Improved-residual unit with squeeze-excitation; the stride sits in the second conv."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # subsampling identity
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), SqueezeExcite(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """ArcFace IR-SE50 on 112×112 faces in [-1, 1] → unit 512-d embeddings (eval mode only)."""

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, cin = [], 64
        for cout, n in IR_SE50_STAGES:
            units += [IRSEUnit(cin, cout, 2)] + [IRSEUnit(cout, cout, 1) for _ in range(n - 1)]
            cin = cout
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.6), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


def face_crop(img: torch.Tensor) -> torch.Tensor:
    """Generator images [N, 3, H, W] → the 112² face crop the network expects (via 256²)."""
    if img.shape[-1] != 256:
        img = F.adaptive_avg_pool2d(img, 256)
    r0, r1, c0, c1 = FACE_CROP
    return F.adaptive_avg_pool2d(img[:, :, r0:r1, c0:c1], 112)


class IdentityLoss:
    """``1 − cos`` of the face embeddings of unedited and edited images, averaged (frozen net)."""

    def __init__(self, net: IRSE50):
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def from_file(cls, spec: str | os.PathLike, device: torch.device | None = None) -> "IdentityLoss":
        """Load IR-SE50 weights from a file or a known name (``arcface-ir-se50``, downloaded)."""
        from ..hub import AUXILIARY, download

        path = download(str(spec)) if str(spec) in AUXILIARY else Path(spec)
        if not path.is_file():
            raise CheckpointError(f"identity network {str(spec)!r} is not a file or a known name",
                                  "pass model_ir_se50.pth, or arcface-ir-se50 to download it")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # refused pickle, truncated zip, …: one line naming the file
            raise CheckpointError(f"{path}: not a readable IR-SE50 state dict ({type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc})") from None
        net = IRSE50()
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: holds a {type(state).__name__}, not an IR-SE50 state dict")
        want = net.state_dict()
        missing = sorted(set(want) - set(state))
        unexpected = sorted(set(state) - set(want))
        bad = [k for k in want if k in state and (not isinstance(state[k], torch.Tensor)
                                                  or tuple(state[k].shape) != tuple(want[k].shape))]
        if missing or unexpected or bad:
            raise CheckpointError(f"{path}: not the IR-SE50 layout (missing {missing[:3]}, unexpected "
                                  f"{unexpected[:3]}, wrong shape {bad[:3]})")
        net.load_state_dict(state)
        return cls(net.to(device) if device is not None else net)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(face_crop(img))

    def loss(self, source_feat: torch.Tensor, edited_img: torch.Tensor) -> torch.Tensor:
        return (1 - (self.features(edited_img) * source_feat).sum(dim=1)).mean()
