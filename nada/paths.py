"""Where nada keeps things: the shipped ``pretrained/`` folder and per-user cache dirs."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def pretrained_dir() -> Path:
    """The folder of shipped shapes-world models (``$NADA_PRETRAINED`` overrides)."""
    env = os.environ.get("NADA_PRETRAINED")
    return Path(env) if env else _REPO_ROOT / "pretrained"


def cache_dir() -> Path:
    """Per-user cache root for downloaded weights (``$NADA_CACHE`` or ``$XDG_CACHE_HOME/nada``)."""
    env = os.environ.get("NADA_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "nada"


def weights_cache_dir() -> Path:
    """Where downloaded generator checkpoints are stored."""
    return cache_dir() / "weights"
