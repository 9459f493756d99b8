"""Generator checkpoints: rosinality ``.pt``, NVIDIA ``.pkl`` (no pickled code runs) and nada's
own safetensors format, detected by content. See :mod:`.core` for the formats."""

from .core import (
    LoadedGenerator,
    atomic_write,
    describe_checkpoint,
    detect_format,
    export_rosinality,
    load_generator,
    save_generator,
)

__all__ = [
    "LoadedGenerator",
    "atomic_write",
    "describe_checkpoint",
    "detect_format",
    "export_rosinality",
    "load_generator",
    "save_generator",
]
