"""Domain files: a domain learnt by a ``stylespace`` or ``modulation`` adapter, in kilobytes.

A domain file is safetensors (one tensor per adapted layer: ``<layer>.offset`` or
``<layer>.multiplier``) with a JSON header naming its kind, its layers, the base generator it
was trained on (the spec given, the resolved path, its sha256 and architecture), the target
text and the training config. It opens wherever a generator does: :func:`load_domain_generator`
finds the base, checks its sha256 and bakes the domain into a full generator on demand, so
``nada generate``, ``nada eval``, the web demo and the mapper take a domain file (or its run
directory) as a generator. :func:`apply` composes several weighted domains on one base.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .adapt.adapters import (
    ADAPTER_KINDS,
    TENSOR_SUFFIX,
    AppliedEdit,
    Domain,
    bake,
    check_fits,
    compose,
)
from .errors import CheckpointError, ConfigError, one_line

log = logging.getLogger(__name__)

DOMAIN_FORMAT = "stylegan2-domain"
DOMAIN_FORMAT_VERSION = "1"
from .hub import (
    RUN_DOMAIN as DOMAIN_FILE,  # the domain in a `nada train --adapter ...` run directory
)


@dataclass
class DomainFile:
    """A domain read from disk (tensors on CPU, fp32)."""

    path: Path
    kind: str                                    # stylespace | modulation
    tensors: dict[str, torch.Tensor]             # layer name → offset / multiplier
    base: dict[str, Any]                         # spec, path, sha256, config (GeneratorConfig dict)
    info: dict[str, Any] = field(default_factory=dict)  # source, target, train config, iteration

    @property
    def domain(self) -> Domain:
        return Domain(self.kind, self.tensors)

    def numel(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from .hub import sha256_file

    return sha256_file(path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, cached per (path, size, mtime) in this process."""
    st = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def base_record(spec: str, path: Path, G) -> dict[str, Any]:
    """What a domain file says about its base generator."""
    return {"spec": str(spec), "path": str(Path(path).resolve()), "sha256": file_sha256(path),
            "config": G.cfg.to_dict()}


def save_domain(tensors: dict[str, torch.Tensor], kind: str, path: str | os.PathLike,
                base: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Write a domain file atomically."""
    from safetensors.torch import save_file

    from .checkpoints import atomic_write

    if kind not in ADAPTER_KINDS:
        raise ConfigError(f"unknown domain kind {kind!r}", f"kinds: {', '.join(ADAPTER_KINDS)}")
    state = {f"{name}.{TENSOR_SUFFIX[kind]}": t.detach().to("cpu", torch.float32).contiguous().clone()
             for name, t in tensors.items()}
    header = {
        "nada_format": DOMAIN_FORMAT,
        "format_version": DOMAIN_FORMAT_VERSION,
        "kind": kind,
        "layers": json.dumps(list(tensors)),
        "base": json.dumps(base, sort_keys=True),
        "info": json.dumps(info or {}, sort_keys=True),
    }
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))


def domain_path(spec: str | os.PathLike) -> Path:
    """A domain file, or the domain of a ``nada train --adapter`` run directory."""
    p = Path(spec).expanduser()
    if p.is_dir():
        if (p / DOMAIN_FILE).is_file():
            return p / DOMAIN_FILE
        raise ConfigError(f"{p} holds no {DOMAIN_FILE}",
                          "pass a domain file, or the run directory of `nada train --adapter stylespace|modulation`")
    if not p.is_file():
        raise ConfigError(f"domain {str(spec)!r} is not a file or a run directory", "check the path")
    return p


def parse_domain_spec(spec: str) -> tuple[Path, float]:
    """``FILE`` or ``FILE:WEIGHT`` (a run directory works as FILE) → (domain file, weight)."""
    text = str(spec)
    weight = 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            text = head
        except ValueError:
            pass  # a ':' inside the path itself
    return domain_path(text), weight


def read_domain(path: str | os.PathLike) -> DomainFile:
    """Read and validate a domain file; one CheckpointError naming the problem."""
    from .checkpoints.tagged import read_tagged

    p = domain_path(path)
    header, raw = read_tagged(p, DOMAIN_FORMAT, DOMAIN_FORMAT_VERSION, "domain file", "not a nada domain file",
                              "domain files are written by `nada train --adapter stylespace|modulation`")
    kind = header.get("kind")
    if kind not in ADAPTER_KINDS:
        raise CheckpointError(f"{p}: unknown domain kind {kind!r}", f"kinds: {', '.join(ADAPTER_KINDS)}")
    try:
        layers = json.loads(header["layers"])
        base = json.loads(header["base"])
        info = json.loads(header.get("info", "{}"))
        if not (isinstance(layers, list) and isinstance(base, dict) and isinstance(info, dict)):
            raise TypeError("layers must be a list, base and info objects")
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{p}: bad domain header ({one_line(exc)})") from None
    suffix = TENSOR_SUFFIX[kind]
    want = {f"{name}.{suffix}" for name in layers}
    if set(raw) != want:
        odd = sorted(set(raw) ^ want)
        raise CheckpointError(f"{p}: domain tensors do not match its layer list (first: {odd[0]})")
    tensors = {}
    for name in layers:
        t = raw[f"{name}.{suffix}"]
        if t.ndim != 1 or not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{p}: {name}.{suffix} must be a finite 1-D float tensor")
        if kind == "modulation" and not bool((t > 0).all()):
            raise CheckpointError(f"{p}: {name}.multiplier has values <= 0 (multipliers are positive)")
        tensors[name] = t.float()
    return DomainFile(p, kind, tensors, base, info)


# --- using domains ----------------------------------------------------------------------------

def check_base(domain: DomainFile, gen_path: Path, G, force: bool = False) -> str | None:
    """Refuse a domain trained on another generator: same sha256 passes; the same architecture
    with ``force`` passes with a warning (returned); anything else is a ConfigError."""
    want = domain.base.get("sha256")
    if want and file_sha256(gen_path) == want:
        return None
    same_arch = domain.base.get("config") == G.cfg.to_dict()
    if not force or not same_arch:
        what = ("another generator of the same architecture" if same_arch
                else "a generator of another architecture")
        hint = ("pass the generator it was trained on, or --force to apply it anyway" if same_arch
                else "use it with the generator it was trained on")
        raise ConfigError(f"domain {domain.path} was trained on {domain.base.get('spec')!r} "
                          f"(sha256 {str(want)[:12]}…), and {gen_path} is {what}", hint)
    note = (f"domain {domain.path.name} was trained on another generator ({domain.base.get('spec')!r}); "
            "applied anyway (--force): the result may not look like the domain")
    log.warning(note)
    return note


def apply(G, domains: list[tuple[DomainFile, float]]) -> AppliedEdit:
    """Hook the weighted composition of ``domains`` into ``G.synthesis`` (on the fly; call
    ``.remove()`` to take it out)."""
    edit = compose([(d.domain, w) for d, w in domains])
    check_fits(edit, G.synthesis)
    return AppliedEdit(edit, G.synthesis)


def bake_into(G, domains: list[tuple[DomainFile, float]]) -> None:
    """Fold the weighted composition of ``domains`` into ``G``'s weights, in place."""
    bake(G.synthesis, compose([(d.domain, w) for d, w in domains]))


def find_base(domain: DomainFile) -> Path:
    """The base generator a domain file names: its spec (``shapes``, a known name), else the
    recorded path; checked by sha256 in :func:`check_base`."""
    from .hub import KNOWN, resolve_generator

    spec = str(domain.base.get("spec", ""))
    candidates = []
    if spec == "shapes" or spec in KNOWN or "://" in spec:
        candidates.append(spec)
    candidates += [domain.base.get("path"), spec]
    for c in candidates:
        if not c:
            continue
        try:
            path = resolve_generator(c)
        except Exception:  # noqa: BLE001  (not found here: try the next)
            continue
        if Path(path).resolve() != domain.path.resolve():
            return path
    raise CheckpointError(f"{domain.path}: its base generator {spec!r} is not here "
                          f"(recorded at {domain.base.get('path')})",
                          "pass it with --generator BASE --domain FILE")


def load_with_domains(generator: str | None, domain_specs: list[str], force: bool = False, device=None):
    """``generator`` (else the first domain's base) with every ``FILE[:W]`` of ``domain_specs``
    baked in at its weight; every domain file is read and checked before the generator loads.
    Returns (LoadedGenerator, the generator file, [(DomainFile, weight)])."""
    from .checkpoints import load_generator
    from .hub import resolve_generator

    domains = [(read_domain(p), w) for p, w in map(parse_domain_spec, domain_specs)]
    path = find_base(domains[0][0]) if generator is None and domains else resolve_generator(generator)
    loaded = load_generator(path, device=device)
    for d, _ in domains:
        check_base(d, path, loaded.generator, force)
    if domains:
        bake_into(loaded.generator, domains)
    return loaded, path, domains


def load_domain_generator(path: str | os.PathLike, device=None, base: str | None = None, force: bool = False):
    """A full generator: the domain's base with the domain baked in (a :class:`LoadedGenerator`
    of format ``domain``)."""
    from .checkpoints import load_generator
    from .checkpoints.core import LoadedGenerator
    from .hub import resolve_generator

    domain = read_domain(path)
    gen_path = resolve_generator(base) if base is not None else find_base(domain)
    loaded = load_generator(gen_path, device=device)
    check_base(domain, Path(gen_path), loaded.generator, force)
    bake_into(loaded.generator, [(domain, 1.0)])
    meta = dict(loaded.metadata)
    meta.update({"source": str(domain.path), "domain": {"kind": domain.kind, "base": str(gen_path),
                                                        "target": domain.info.get("target")}})
    return LoadedGenerator(loaded.generator, "domain", meta)


def describe_domain(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Key/value rows for ``nada info DOMAIN``."""
    d = read_domain(path)
    cfg = d.base.get("config") or {}
    rows = [
        ("file", str(d.path)),
        ("size", f"{d.path.stat().st_size / 1024:.1f} KiB"),
        ("format", f"nada domain ({d.kind})"),
        ("numbers", f"{d.numel():,} ({'offsets' if d.kind == 'stylespace' else 'multipliers'}) "
                    f"in {len(d.tensors)} layers"),
        ("layers", ", ".join(d.tensors)),
        ("base generator", f"{d.base.get('spec')} ({d.base.get('path')})"),
        ("base sha256", str(d.base.get("sha256"))),
        ("base architecture", f"{cfg.get('img_resolution')}px, w_dim {cfg.get('w_dim')}"),
    ]
    info = d.info
    if info.get("target") or info.get("source"):
        rows.append(("domain", f"{info.get('source')!r} → {info.get('target')!r}"))
    if "iteration" in info:
        rows.append(("iterations", str(info["iteration"])))
    stats = []
    for name, t in d.tensors.items():
        v = t if d.kind == "stylespace" else t.log()
        stats.append(float(v.abs().max()))
    rows.append(("largest |" + ("offset" if d.kind == "stylespace" else "log multiplier") + "|",
                 f"{max(stats):.4f}"))
    return rows


def is_domain_file(path: str | os.PathLike) -> bool:
    """True for a nada domain file (header check only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return (f.metadata() or {}).get("nada_format") == DOMAIN_FORMAT
    except Exception:  # noqa: BLE001
        return False
