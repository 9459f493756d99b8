"""StyleGAN2 generator built on ``stylegan2_ops`` (see docs/design.md, ``nada.networks``)."""

from .config import PRESETS, GeneratorConfig
from .generator import Generator, LayerRef, MappingNetwork, SynthesisNetwork, SynthesisState, style_mix
from .layers import NOISE_MODES, modulated_conv2d

__all__ = [
    "PRESETS",
    "GeneratorConfig",
    "Generator",
    "LayerRef",
    "MappingNetwork",
    "SynthesisNetwork",
    "SynthesisState",
    "NOISE_MODES",
    "modulated_conv2d",
    "style_mix",
]
