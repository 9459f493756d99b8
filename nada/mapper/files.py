"""Mapper files (safetensors + JSON header: architecture, strength, target, losses and the
generator it was trained on, never the generator itself) and W+ latents files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import atomic_write
from ..errors import CheckpointError, ConfigError, DataError
from .network import LevelsMapper, MapperArch

MAPPER_FORMAT = "levels-mapper"
MAPPER_FORMAT_VERSION = "1"


@dataclass
class LoadedMapper:
    """A mapper read from a file, and what its header says about it."""

    mapper: LevelsMapper
    metadata: dict[str, Any] = field(default_factory=dict)   # target, strength, losses, generator, …

    @property
    def strength(self) -> float:
        return float(self.metadata.get("strength", 0.1))


def describe_generator(G, path: str | os.PathLike, spec: str) -> dict[str, Any]:
    """What a mapper records about the generator it was trained on (sha256 of the file, shape)."""
    from ..hub import sha256_file

    return {"spec": str(spec), "file": Path(path).name, "sha256": sha256_file(path), "name": G.cfg.name,
            "img_resolution": int(G.img_resolution), "w_dim": int(G.w_dim), "num_ws": int(G.num_ws)}


def save_mapper(mapper: LevelsMapper, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write the mapper's tensors and header atomically (a few MB at 1024², no generator)."""
    from safetensors.torch import save_file

    header = {"nada_format": MAPPER_FORMAT, "format_version": MAPPER_FORMAT_VERSION,
              "arch": json.dumps(mapper.arch.to_dict(), sort_keys=True),
              "metadata": json.dumps(metadata, sort_keys=True)}
    state = {k: v.detach().cpu().contiguous().clone() for k, v in mapper.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))


def load_mapper(path: str | os.PathLike, device: torch.device | str | None = None) -> LoadedMapper:
    """Read a mapper file, checking every key and shape against its recorded architecture."""
    from ..checkpoints.tagged import read_tagged

    p = Path(path)
    if p.is_dir() and (p / "mapper.safetensors").is_file():  # a `nada mapper train` run directory
        p = p / "mapper.safetensors"
    if not p.is_file():
        raise CheckpointError(f"mapper {str(path)!r} is not a file", "pass a mapper.safetensors or its run directory")
    header, state = read_tagged(p, MAPPER_FORMAT, MAPPER_FORMAT_VERSION, "mapper file", "not a nada mapper file",
                                "pass a file written by `nada mapper train`")
    try:
        arch = MapperArch.from_dict(json.loads(header["arch"]))
        meta = json.loads(header.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{p}: bad mapper header ({exc})") from exc
    mapper = LevelsMapper(arch)
    want = mapper.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    mismatched = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or mismatched:
        raise CheckpointError(f"{p}: tensors do not match the mapper architecture "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {mismatched[:3]})")
    mapper.load_state_dict(state)
    mapper.eval().requires_grad_(False)
    if device is not None:
        mapper.to(device)
    return LoadedMapper(mapper, meta)


def check_fits(loaded: LoadedMapper, G, gen_path: str | os.PathLike | None = None) -> str | None:
    """Refuse a mapper whose shape does not fit ``G`` (one line); return a note when ``G`` is a
    different generator of the same shape (an adapted twin, say), None when it is the same file."""
    a = loaded.mapper.arch
    if (a.w_dim, a.num_ws, a.img_resolution) != (int(G.w_dim), int(G.num_ws), int(G.img_resolution)):
        raise ConfigError(
            f"the mapper edits {a.img_resolution}px generators with {a.num_ws} ws of width {a.w_dim}; this "
            f"generator is {G.img_resolution}px with {G.num_ws} ws of width {G.w_dim}",
            "use a mapper trained on a generator of this architecture")
    trained_on = loaded.metadata.get("generator") or {}
    if gen_path is None or not trained_on.get("sha256"):
        return None
    from ..hub import sha256_file

    if sha256_file(gen_path) == trained_on["sha256"]:
        return None
    return (f"the mapper was trained on another generator of the same shape ({trained_on.get('spec')}, "
            f"sha256 {trained_on['sha256'][:12]}…); applying it to {Path(gen_path).name}")


def load_latents(path: str | os.PathLike, num_ws: int, w_dim: int) -> torch.Tensor:
    """W+ latents [N, num_ws, w_dim] from a safetensors file (key ``ws``, or its only tensor);
    W latents [N, w_dim] are broadcast to every row."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise DataError(f"latents file {str(path)!r} does not exist", "pass a safetensors file of W+ latents")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            key = "ws" if "ws" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DataError(f"{p}: no 'ws' tensor among {keys[:5]}", "store the latents under the key 'ws'")
            ws = f.get_tensor(key)
    except SafetensorError as exc:
        raise DataError(f"{p}: not a readable safetensors latents file ({exc})") from exc
    if ws.ndim == 2 and ws.shape[1] == w_dim:
        ws = ws[:, None, :].expand(-1, num_ws, -1)
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (num_ws, w_dim) or ws.shape[0] < 1:
        raise DataError(f"{p}: latents of shape {list(ws.shape)}, expected [N, {num_ws}, {w_dim}]",
                        "invert images with this generator, or sample latents instead")
    if not ws.is_floating_point() or not torch.isfinite(ws).all():
        raise DataError(f"{p}: latents must be finite floating-point numbers")
    return ws.float().contiguous()


def save_latents(ws: torch.Tensor, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write W+ latents under the key ``ws`` (atomic)."""
    from safetensors.torch import save_file

    t = ws.detach().cpu().float().contiguous()
    return atomic_write(path, lambda tmp: save_file({"ws": t}, tmp, metadata=metadata))
