"""The shapes world: a procedural image domain with known ground truth (renderer, oracle, eval).

See ``docs/design.md`` and the shared SHAPES_WORLD.md; heavy parts (torch models) load lazily.
"""

from .renderer import (
    COLOURS,
    SHAPES,
    STYLES,
    STYLES_WITH_COLOUR,
    Factors,
    colour_bucket,
    random_factors,
    render,
    render_batch,
    to_tensor,
    to_uint8,
)

__all__ = [
    "COLOURS",
    "SHAPES",
    "STYLES",
    "STYLES_WITH_COLOUR",
    "Factors",
    "colour_bucket",
    "random_factors",
    "render",
    "render_batch",
    "to_tensor",
    "to_uint8",
]
