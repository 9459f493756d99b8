"""nada's own safetensors files (generators, domain files, mappers): one reader that checks the
header's format tag and version, with one CheckpointError for a foreign, corrupt, unreadable
or unsupported file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError, one_line


def read_tagged(path: str | os.PathLike, fmt: str, version: str, what: str, foreign: str,
                hint: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """``(header, tensors)`` of a safetensors file whose ``nada_format`` is ``fmt`` at
    ``format_version`` ``version``. ``what`` names the kind in messages ("mapper file");
    ``foreign`` and ``hint`` are the message for a file without the tag."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            if header.get("nada_format") != fmt:
                raise CheckpointError(f"{p}: {foreign}", hint)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open is not a mapping)
    except SafetensorError as exc:
        raise CheckpointError(f"{p}: truncated or corrupt {what} ({one_line(exc)})") from None
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read the {what} ({one_line(exc)})") from None
    if header.get("format_version") != version:
        raise CheckpointError(f"{p}: {what} format version {header.get('format_version')!r} is not supported",
                              f"this nada reads version {version}")
    return header, tensors
