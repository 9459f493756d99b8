"""Where nada keeps things: the shipped ``pretrained/`` folder and per-user cache dirs."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def locate_pretrained() -> tuple[Path, str]:
    """The folder of shipped shapes-world models and how it was found: ``$NADA_PRETRAINED``, else
    the installed data package ``nada._pretrained`` (the repo's ``pretrained/``, mapped there by
    pyproject.toml, so a wheel runs offline), else ``pretrained/`` beside the source tree (a
    checkout, or an editable install)."""
    env = os.environ.get("NADA_PRETRAINED")
    if env:
        return Path(env), "$NADA_PRETRAINED"
    try:
        from importlib.resources import files

        found = Path(str(files("nada._pretrained")))
    except (ModuleNotFoundError, TypeError):
        found = None
    if found is not None and (found / "MANIFEST.json").is_file():
        return found, "installed package nada._pretrained"
    return _REPO_ROOT / "pretrained", "source tree"


def pretrained_dir() -> Path:
    """The folder of shipped shapes-world models (see :func:`locate_pretrained`)."""
    return locate_pretrained()[0]


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
