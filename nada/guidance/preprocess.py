"""Differentiable CLIP preprocessing of generator output.

Generator images (NCHW in [-1, 1], any size and aspect) become model input the way open_clip's
PIL pipeline makes it: resize the short side to the model's size with antialiased bicubic
interpolation, centre crop, normalise with the model's mean/std. Against open_clip's own PIL
preprocessing of the same uint8 image the result agrees to within the uint8 rounding of PIL's
resize (tests: max abs difference <= 0.06 in normalised units, mean <= 0.01).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def clip_preprocess(
    img: torch.Tensor,          # [N, 3, H, W] in [-1, 1]
    size: int,                  # model input size (square)
    mean: Sequence[float],      # per-channel mean of the model (in [0, 1] units)
    std: Sequence[float],       # per-channel std of the model
) -> torch.Tensor:
    """Resize (short side → ``size``), centre crop, normalise; differentiable."""
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {list(img.shape)}")
    x = (img.float() + 1) / 2
    h, w = x.shape[2:]
    if (h, w) != (size, size):
        # torchvision's Resize(int): short side = size, long side truncated
        nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        x = x[:, :, top: top + size, left: left + size]
    x = x.clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s
