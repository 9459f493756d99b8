"""The fixed, documented map from a latent z to renderer factors used to train the shapes generator.

The shapes generator learns ``G(z) ~ render(factors_from_z(z), texture_seeds(z))`` so every
latent has ground truth. With Phi the standard normal CDF and z of any ``z_dim >= 16``
(only the first 13 dimensions are read):

====================  ===============================================================
factor                function of z
====================  ===============================================================
hue (deg)             ``atan2(z[1], z[0])`` mapped to [0, 360): uniform, wraps smoothly
cx, cy (px)           ``lo + (hi - lo) * Phi(z[2])``, ``... Phi(z[3])`` (CENTRE_RANGE)
size (px)             ``lo + (hi - lo) * Phi(z[4])`` (SIZE_RANGE)
rotation (deg)        always 0: the source domain is upright shapes (z[5], z[6] unused)
shape                 ``SHAPES[argmax(z[7:12])]`` (uniform over the five shapes)
style                 always ``photo`` (the source domain)
texture seed          ``floor(Phi(z[12]) * TEXTURE_SEEDS)``: one of 8 background textures
====================  ===============================================================

Why upright: the renderer, CLIP and oracle cover every rotation, but a 64 px StyleGAN2 trained
by regression does not learn to rotate its shapes in a CPU budget. With ``atan2(z[6], z[5])``
(or even +-30 degrees) it drew rotation-averaged discs (oracle shape agreement 22-24% after
1.3 M images on a GPU); the same run with upright targets reached 58% in 9 CPU minutes. An
upright domain is the shapes-world analogue of aligned face datasets such as FFHQ.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .renderer import CENTRE_RANGE, RESOLUTION, SHAPES, SIZE_RANGE, STYLES, Factors, render_batch, to_tensor

MIN_Z_DIM = 16
TEXTURE_SEEDS = 8
SHAPE_DIMS = slice(7, 12)  # the shape is SHAPES[argmax(z[SHAPE_DIMS])]


def _check(z: torch.Tensor) -> torch.Tensor:
    if z.ndim != 2 or z.shape[1] < MIN_Z_DIM:
        raise ConfigError(f"z must be [N, z_dim >= {MIN_Z_DIM}], got shape {tuple(z.shape)}", "use z_dim >= 16")
    return z.detach().to("cpu", torch.float64)


def _phi(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def shape_margin(z: torch.Tensor) -> torch.Tensor:
    """Top minus runner-up of ``z[:, SHAPE_DIMS]``: how far each latent lies from a shape boundary
    (near 0 a smooth generator blends two shapes)."""
    top2 = z[:, SHAPE_DIMS].topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def factors_from_z(z: torch.Tensor) -> list[Factors]:
    """Ground-truth factors (style ``photo``) of each latent row of ``z`` [N, z_dim]."""
    z = _check(z)
    hue = torch.rad2deg(torch.atan2(z[:, 1], z[:, 0])) % 360.0
    cx = CENTRE_RANGE[0] + (CENTRE_RANGE[1] - CENTRE_RANGE[0]) * _phi(z[:, 2])
    cy = CENTRE_RANGE[0] + (CENTRE_RANGE[1] - CENTRE_RANGE[0]) * _phi(z[:, 3])
    size = SIZE_RANGE[0] + (SIZE_RANGE[1] - SIZE_RANGE[0]) * _phi(z[:, 4])
    shape = z[:, SHAPE_DIMS].argmax(1)
    return [
        Factors(
            shape=SHAPES[int(shape[i])],
            hue=float(hue[i]),
            cx=float(cx[i]),
            cy=float(cy[i]),
            size=float(size[i]),
            rotation=0.0,
            style="photo",
        )
        for i in range(z.shape[0])
    ]


def texture_seeds(z: torch.Tensor) -> list[int]:
    """The renderer seed (background texture) of each latent: ``floor(Phi(z[12]) * 8)``."""
    z = _check(z)
    return [min(int(v), TEXTURE_SEEDS - 1) for v in (_phi(z[:, 12]) * TEXTURE_SEEDS).floor()]


def render_from_z(z: torch.Tensor, style: str = "photo") -> np.ndarray:
    """uint8 [N,64,64,3]: what the shapes generator should draw for ``z`` (in ``style``)."""
    if style not in STYLES:
        raise ConfigError(f"unknown style {style!r}", f"use one of {', '.join(STYLES)}")
    factors = [f.replace(style=style) for f in factors_from_z(z)]
    return render_batch(factors, texture_seeds(z))


class RenderedGenerator(nn.Module):
    """An exact, non-differentiable stand-in for a shapes generator: ``z -> render(factors_from_z(z))``
    in a fixed ``style``, with the ``nada.networks.Generator`` call signature (for tests and as
    the ideal of an adaptation)."""

    def __init__(self, style: str = "photo", z_dim: int = 128):
        super().__init__()
        if style not in STYLES:
            raise ConfigError(f"unknown style {style!r}", f"use one of {', '.join(STYLES)}")
        if z_dim < MIN_Z_DIM:
            raise ConfigError(f"z_dim {z_dim} is too small", f"use z_dim >= {MIN_Z_DIM}")
        self.style = style
        self.z_dim = z_dim
        self.img_resolution = RESOLUTION
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # carries device/dtype

    def forward(self, z, truncation_psi=1, truncation_cutoff=None, noise_mode="const", **_):
        return to_tensor(render_from_z(z, self.style), device=z.device)
