"""Real images into a generator's latent space: optimisation-based projection (W+ / W), an
e4e encoder, losses (LPIPS VGG16 or pixel + multi-scale), image loading and face alignment.
See docs/invert.md."""

from .api import Inversion, invert_arrays, load_inputs, write_inversion
from .config import InvertConfig
from .e4e import E4E, Encoder4Editing, load_e4e
from .losses import ReconstructionLoss, build_loss
from .projector import Projection, project

__all__ = [
    "E4E",
    "Encoder4Editing",
    "Inversion",
    "InvertConfig",
    "Projection",
    "ReconstructionLoss",
    "build_loss",
    "invert_arrays",
    "load_e4e",
    "load_inputs",
    "project",
    "write_inversion",
]
