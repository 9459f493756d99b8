"""Resolve a user's device string once, at the edge (CLI, app, top-level API)."""

from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → CUDA if available else CPU; anything else is parsed and checked."""
    if isinstance(spec, torch.device):
        return spec
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {spec!r}", "use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available", "use --device cpu")
    return dev
