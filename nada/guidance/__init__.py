"""CLIP guidance: open_clip models (and the embedded shapes CLIP) behind one interface, and the
NADA losses (global, directional, embedding-norm, manifold angle, angle consistency,
patch-directional)."""

from .encoder import ClipEncoder, cached_weights, clear_cache, imagenet_templates, load_clip
from .losses import (
    CLIPGuidance,
    angle_consistency_loss,
    directional_loss,
    embedding_norm_loss,
    global_clip_loss,
    manifold_angle_loss,
    patch_directional_loss,
    random_patches,
    text_direction,
)
from .preprocess import clip_preprocess
from .specs import OPENAI_ALIASES, ClipSpec, parse_spec

__all__ = [
    "CLIPGuidance",
    "angle_consistency_loss",
    "ClipEncoder",
    "ClipSpec",
    "OPENAI_ALIASES",
    "cached_weights",
    "clear_cache",
    "clip_preprocess",
    "directional_loss",
    "embedding_norm_loss",
    "global_clip_loss",
    "imagenet_templates",
    "load_clip",
    "manifold_angle_loss",
    "parse_spec",
    "patch_directional_loss",
    "random_patches",
    "text_direction",
]
