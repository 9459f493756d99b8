"""The NADA engine: twin generators with a shared mapping network, adaptive layer freezing, and
the training loop behind ``nada train`` (see docs/design.md, ``nada.adapt``)."""

from .config import PRESETS, TrainConfig, resolve_k
from .layers import LayerSelection, select_layers, set_trainable
from .trainer import Objective, RunResult, Trainer, prepare, train
from .twin import TwinGenerator

__all__ = [
    "PRESETS",
    "TrainConfig",
    "resolve_k",
    "LayerSelection",
    "select_layers",
    "set_trainable",
    "Objective",
    "RunResult",
    "Trainer",
    "prepare",
    "train",
    "TwinGenerator",
]
