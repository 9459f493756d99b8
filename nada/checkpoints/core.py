"""Load, save, convert and describe generator checkpoints; formats are detected by content.

Formats:
- ``nada``: safetensors with the generator's ``state_dict()`` (NVIDIA key names) and, in the
  header metadata, ``nada_format="stylegan2-generator"``, ``format_version``, ``config`` (JSON of
  :class:`GeneratorConfig`) and ``metadata`` (JSON: source checkpoint, training config, …).
- ``rosinality``: ``torch.save`` dict with ``g_ema`` (or ``g``) and optional ``latent_avg``, read
  with torch's weights-only loader (see :mod:`.rosinality` for the key layout).
- ``nvidia``: stylegan2-ada-pytorch network pickle, read by :mod:`.safe_pickle` (no code runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, NadaError, one_line
from ..networks import Generator, GeneratorConfig
from . import nvidia, rosinality, tensorflow
from .errors import layout_error
from .safe_pickle import TORCH_LEGACY_MAGIC, safe_load

log = logging.getLogger(__name__)

NADA_FORMAT = "stylegan2-generator"
NADA_FORMAT_VERSION = "1"
W_AVG_SAMPLES = 4096  # z samples for estimating w_avg when a checkpoint lacks it (seed 0)


@dataclass
class LoadedGenerator:
    """A generator read from a file: the module (eval mode), its format and metadata."""

    generator: Generator
    format: str                                   # 'nada' | 'rosinality' | 'nvidia'
    metadata: dict[str, Any] = field(default_factory=dict)


# --- detection ----------------------------------------------------------------------------

def detect_format(path: str | os.PathLike) -> str:
    """'nada' (safetensors), 'torch' (zip or legacy torch.save) or 'pickle', by content."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file", "check the path")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(16)
    if len(head) < 8:
        raise CheckpointError(f"{p}: file is empty or truncated ({size} bytes)")
    if head[:4] == b"PK\x03\x04":
        return "torch"
    header_len = int.from_bytes(head[:8], "little")
    if 2 <= header_len <= size - 8 and head[8:9] == b"{":
        return "nada"
    if head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    raise CheckpointError(
        f"{p}: unknown checkpoint format (starts with {head[:8]!r})",
        "nada reads rosinality .pt, NVIDIA stylegan2-ada .pkl and nada .safetensors",
    )


# --- loading ------------------------------------------------------------------------------

def load_generator(path: str | os.PathLike, device: torch.device | str | None = None) -> LoadedGenerator:
    """Read any supported checkpoint into a :class:`Generator` (eval mode, on ``device``)."""
    p = Path(path)
    kind = detect_format(p)
    if kind == "nada" and _is_domain(p):  # a domain file: its base generator with the domain baked in
        from ..domains import load_domain_generator

        return load_domain_generator(p, device=device)
    if kind == "nada":
        cfg, state, meta, fmt = *_read_nada(p), "nada"
    elif kind == "torch":
        cfg, state, meta = _read_rosinality(p)
        fmt = "rosinality"
    else:
        data = p.read_bytes()
        try:
            res = safe_load(data)
        except RecursionError:
            raise CheckpointError(f"{p}: corrupt pickle (nested too deeply)") from None
        except MemoryError:
            raise CheckpointError(f"{p}: corrupt pickle (declares more memory than it could hold)") from None
        except Exception as exc:  # noqa: BLE001  (whatever a damaged pickle makes the unpickler raise)
            raise CheckpointError(f"{p}: truncated or corrupt pickle ({one_line(exc)})") from None
        if isinstance(res.obj, int) and res.obj == TORCH_LEGACY_MAGIC:
            cfg, state, meta = _read_rosinality(p)
            fmt = "rosinality"
        else:
            fmt = "tensorflow" if tensorflow.is_tf_pickle(res.obj) else "nvidia"
            try:
                if fmt == "tensorflow":
                    cfg, state, meta = tensorflow.load_tensorflow(res.obj, str(p))
                else:
                    cfg, state, meta = nvidia.load_nvidia(res.obj, res.refused, str(p))
            except NadaError:
                raise
            except Exception as exc:  # noqa: BLE001  (a damaged record where a tensor or dict belongs)
                raise CheckpointError(f"{p}: malformed {fmt} network pickle ({one_line(exc)})") from None
    G = _build(cfg, state, str(p), fmt)
    if "mapping.w_avg" not in state:
        gen = torch.Generator().manual_seed(0)
        G.mapping.estimate_w_avg(W_AVG_SAMPLES, generator=gen)
        meta["w_avg"] = f"estimated from {W_AVG_SAMPLES} z (seed 0)"
    meta.setdefault("source", str(p))
    G.eval().requires_grad_(False)
    if device is not None:
        G.to(device)
    return LoadedGenerator(G, fmt, meta)


def _build(cfg: GeneratorConfig, state: dict[str, torch.Tensor], path: str, fmt: str) -> Generator:
    """A generator with exactly these tensors: every key present, every shape equal."""
    G = Generator(cfg)
    want = G.state_dict()
    optional = {"mapping.w_avg"}
    missing = [k for k in want if k not in state and k not in optional]
    unexpected = [k for k in state if k not in want]
    mismatched = [
        f"{k} {list(state[k].shape)} vs expected {list(want[k].shape)}"
        for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise layout_error(path, f"{fmt} checkpoint does not match its {cfg.img_resolution}px architecture",
                           missing=missing, unexpected=unexpected, mismatched=mismatched)
    with torch.no_grad():
        for k, v in want.items():
            if k in state:
                v.copy_(state[k])
    return G


def _is_domain(p: Path) -> bool:
    from ..domains import is_domain_file

    return is_domain_file(p)


def _read_nada(p: Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    from .tagged import read_tagged

    header, state = read_tagged(
        p, NADA_FORMAT, NADA_FORMAT_VERSION, "generator file", "safetensors file without nada generator metadata",
        "only files written by nada (save_generator / nada convert) carry the architecture")
    try:
        cfg = GeneratorConfig.from_dict(json.loads(header["config"]))
        meta = json.loads(header.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise CheckpointError(f"{p}: bad nada config/metadata in the header ({exc})") from exc
    return cfg, state, meta


def _check_zip_members(p: Path) -> None:
    """Refuse a torch zip file whose members declare more bytes than the file holds (torch's
    reader allocates a member's declared size)."""
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except Exception as exc:  # noqa: BLE001  (BadZipFile, NotImplementedError for odd versions, ...)
        raise CheckpointError(f"{p}: truncated or corrupt torch checkpoint ({one_line(exc)})") from None
    size = p.stat().st_size
    big = [i for i in infos if i.file_size > size or i.compress_size > size]
    if big or sum(i.compress_size for i in infos) > size:
        what = f"member {big[0].filename!r} declares {big[0].file_size:,} bytes" if big else "its members declare more bytes"
        raise CheckpointError(f"{p}: corrupt torch checkpoint ({what} in a file of {size:,})")


def _read_rosinality(p: Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    if detect_format(p) == "torch":
        _check_zip_members(p)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{p}: refused by the weights-only loader: {first[-1] if first else exc}",
            "only tensors, containers and argparse.Namespace are accepted in .pt checkpoints",
        ) from exc
    except MemoryError:
        raise CheckpointError(f"{p}: corrupt torch checkpoint (declares more memory than it could hold)") from None
    except Exception as exc:  # noqa: BLE001  (whatever a damaged file makes torch's loader raise)
        raise CheckpointError(f"{p}: truncated or corrupt torch checkpoint ({one_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p}: torch checkpoint holds a {type(ckpt).__name__}, not a dict with g_ema")
    if "g_ema" in ckpt:
        sd, net = ckpt["g_ema"], "g_ema"
    elif "g" in ckpt:
        sd, net = ckpt["g"], "g"
        log.warning("%s has no g_ema; using the non-averaged generator g", p)
    elif "style.1.weight" in ckpt:
        sd, net = ckpt, "(bare state dict)"
    else:
        raise layout_error(str(p), "torch checkpoint has no g_ema or g generator", missing=["g_ema"],
                           unexpected=[str(k) for k in ckpt][:5])
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{p}: {net} is not a state dict of tensors")
    cfg = rosinality.infer_config(sd, str(p))
    extra = ckpt.get("nada_config")
    if isinstance(extra, dict):  # our own export: restore fields tensors cannot show
        try:
            saved = GeneratorConfig.from_dict(extra)
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{p}: bad nada_config entry ({exc})") from exc
        shape_fields = ("img_resolution", "z_dim", "w_dim", "mapping_layers", "img_channels")
        diff = [f for f in shape_fields if getattr(saved, f) != getattr(cfg, f)]
        if diff or any(saved.channels(r) != cfg.channels(r) for r in cfg.block_resolutions):
            raise layout_error(str(p), "nada_config disagrees with the tensors", mismatched=diff or ["channels"])
        cfg = saved
    state = rosinality.import_state_dict(sd, cfg, str(p))
    meta: dict[str, Any] = {"source_format": "rosinality", "network": net}
    latent = ckpt.get("latent_avg")
    if isinstance(latent, torch.Tensor):
        if latent.numel() != cfg.w_dim:
            raise layout_error(str(p), "latent_avg has the wrong size",
                               mismatched=[f"latent_avg {list(latent.shape)} vs expected [{cfg.w_dim}]"])
        state["mapping.w_avg"] = latent.reshape(cfg.w_dim)
        meta["w_avg"] = "latent_avg"
    if isinstance(ckpt.get("nada_metadata"), str):
        try:
            meta.update(json.loads(ckpt["nada_metadata"]))
        except json.JSONDecodeError:
            pass
    return cfg, state, meta


# --- writing ------------------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp file next to ``path``, fsync it, then rename into place,
    so readers never see a half-written file."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:  # a parent that is a file, a read-only or pseudo file system
        raise ConfigError(f"cannot write {p}: {exc.strerror or type(exc).__name__}", "choose a writable place") from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved model is an ordinary file
        os.replace(tmp, p)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        io_failure = isinstance(exc, OSError) or "I/O error" in str(exc)  # safetensors reports OS errors its own way
        if io_failure and not isinstance(exc, NadaError):  # a full disk, a file-size limit
            reason = getattr(exc, "strerror", None) or str(exc).rsplit(": ", 1)[-1].split(" (os error")[0]
            raise ConfigError(f"cannot write {p}: {reason}",
                              "free some space or choose another place; nothing was written") from None
        raise
    return p


def _cpu_state(G: Generator) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}


def save_generator(G: Generator, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``G`` in nada's format (safetensors + JSON config/metadata), atomically."""
    from safetensors.torch import save_file

    try:
        meta_json = json.dumps(metadata or {}, sort_keys=True)
    except TypeError as exc:
        raise CheckpointError(f"{path}: metadata is not JSON-serialisable ({exc})") from exc
    header = {
        "nada_format": NADA_FORMAT,
        "format_version": NADA_FORMAT_VERSION,
        "config": json.dumps(G.cfg.to_dict(), sort_keys=True),
        "metadata": meta_json,
    }
    state = _cpu_state(G)
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))


def rosinality_limits(cfg) -> str | None:
    """Why rosinality's own ``Generator`` class cannot rebuild this architecture (the export still
    opens in nada), or None when it can."""
    if cfg.channel_multiplier is None:
        return (f"its channel widths (base {cfg.channel_base}, max {cfg.channel_max}) follow no rosinality "
                "channel_multiplier")
    return None


def export_rosinality(G: Generator, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
                      warn: bool = True) -> Path:
    """Write ``G`` as a rosinality checkpoint ``{'g_ema', 'latent_avg'}`` that its
    ``Generator(size, style_dim, n_mlp, channel_multiplier)`` loads (plus ``nada_config``).
    ``warn=False``: the caller reports :func:`rosinality_limits` itself."""
    cfg = G.cfg
    if cfg.img_channels != 3 or not cfg.use_noise or cfg.w_dim != cfg.z_dim:
        raise CheckpointError(
            f"{path}: rosinality's Generator needs 3 colour channels, noise inputs and z_dim == w_dim",
            "save in nada format instead (--format nada)",
        )
    if warn and rosinality_limits(cfg):
        log.warning("%s: %s; the file opens in nada but not in rosinality's Generator class", path,
                    rosinality_limits(cfg))
    if cfg.conv_clamp is not None or cfg.mapping_lr_mul != 0.01:
        log.warning("%s: conv_clamp/mapping_lr_mul differ from rosinality defaults; pass lr_mlp accordingly",
                    path)
    state = _cpu_state(G)
    ckpt = {
        "g_ema": rosinality.export_state_dict(state, cfg),
        "latent_avg": state["mapping.w_avg"].clone(),
        "nada_config": cfg.to_dict(),
        "nada_metadata": json.dumps(metadata or {}, sort_keys=True),
    }
    return atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


# --- description --------------------------------------------------------------------------

def describe_checkpoint(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Key/value rows for ``nada info PATH``: format, architecture, parameters, metadata."""
    p = Path(path)
    if detect_format(p) == "nada" and _is_domain(p):
        from ..domains import describe_domain

        return describe_domain(p)
    loaded = load_generator(p)
    G, cfg = loaded.generator, loaded.generator.cfg
    chans = " ".join(f"{r}:{cfg.channels(r)}" for r in cfg.block_resolutions)
    rows = [
        ("file", str(p)),
        ("size", f"{p.stat().st_size / 2**20:.1f} MiB"),
        ("format", loaded.format),
        ("resolution", f"{cfg.img_resolution}x{cfg.img_resolution}x{cfg.img_channels}"),
        ("z_dim / w_dim", f"{cfg.z_dim} / {cfg.w_dim}"),
        ("mapping layers", str(cfg.mapping_layers)),
        ("num_ws", str(G.num_ws)),
        ("channels", chans),
        ("channel base / max", f"{cfg.channel_base} / {cfg.channel_max}"
         + (f" (rosinality channel_multiplier {cfg.channel_multiplier})" if cfg.channel_multiplier else "")),
        ("parameters", f"{sum(t.numel() for t in G.parameters()):,}"),
        ("noise", "per-layer const buffers" if cfg.use_noise else "none"),
    ]
    if cfg.conv_clamp is not None:
        rows.append(("conv_clamp", str(cfg.conv_clamp)))
    from ..recipe import RECIPE_KEY, recipe_from_metadata

    recipe = recipe_from_metadata(loaded.metadata, str(p))
    if recipe is None:
        rows.append(("training recipe", "none (nada train uses the official defaults)"))
    else:
        fmt = lambda d: ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in d.items()) or "-"  # noqa: E731
        rows.append(("recipe: train", fmt(recipe.train)))
        for kind, values in recipe.adapters.items():
            rows.append((f"recipe: {kind}", fmt(values)))
        rows.append(("recipe: mapper", fmt(recipe.mapper)))
        rows.append(("recipe: evaluator", recipe.evaluator or "none"))
        if recipe.note:
            rows.append(("recipe: note", recipe.note))
    for key, value in loaded.metadata.items():
        if key in ("source", RECIPE_KEY):
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        rows.append((key, text if len(text) <= 100 else text[:97] + "..."))
    return rows
