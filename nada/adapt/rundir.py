"""The run directory of ``nada train``: creation rules, config.json, metrics.jsonl, sample grids
and the resumable training state (model + optimiser + every RNG + iteration)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints import atomic_write
from ..errors import ConfigError
from ..hub import RUN_DOMAIN, RUN_GENERATOR
from .config import TrainConfig

log = logging.getLogger(__name__)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples"
CHECKPOINTS = "checkpoints"
RESUME = "resume.pt"
GENERATOR = RUN_GENERATOR  # hub.resolve_generator finds it in a run directory
DOMAIN = RUN_DOMAIN        # the domain file of an --adapter run (opens as a generator too)
ROSINALITY = "generator_rosinality.pt"
EVAL = "eval.json"
STATE_VERSION = 1


def check_resumable(out: str | os.PathLike) -> None:
    """One ConfigError unless ``out`` holds a resumable checkpoint; for a run stopped before its
    first one, the message names the way out (start it again with --overwrite)."""
    out = Path(out)
    if (out / CHECKPOINTS / RESUME).is_file():
        return
    if (out / CONFIG).is_file():
        raise ConfigError(f"{out} stopped before its first checkpoint: there is nothing to resume",
                          "start it again with the same options and --overwrite (it holds no trained weights)")
    raise ConfigError(f"{out} holds no resumable checkpoint ({CHECKPOINTS}/{RESUME})",
                      "start a new run without --resume")


def check_run_dir(cfg: TrainConfig) -> Path:
    """Refuse to clobber: an existing non-empty ``out`` needs ``overwrite`` (and must look like a
    nada run, so a typo can't wipe an unrelated folder) or ``resume`` (and must hold a resumable
    checkpoint). Creates nothing."""
    from ..outputs import check_writable

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run directory {out} is a file", "choose another --out")
    nonempty = out.is_dir() and any(out.iterdir())
    resumable = (out / CHECKPOINTS / RESUME).is_file()
    if cfg.resume:
        check_resumable(out)
        check_writable(out, "run directory")
        return out
    if nonempty:
        if not cfg.overwrite:
            hint = ("pass --resume to continue it, --overwrite to start again, or another --out" if resumable else
                    "it holds no checkpoint to resume: pass --overwrite to start again, or another --out")
            raise ConfigError(f"run directory {out} already exists", hint)
        if not (out / CONFIG).is_file():
            raise ConfigError(f"{out} is not empty and is not a nada run directory (no {CONFIG})",
                              "refusing to delete it; choose another --out")
    check_writable(out, "run directory")
    return out


def create_run_dir(cfg: TrainConfig) -> Path:
    """Make (or, with ``overwrite``, empty) the run directory and write ``config.json``."""
    out = check_run_dir(cfg)
    if cfg.resume:
        return out
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    (out / SAMPLES).mkdir(parents=True, exist_ok=True)
    (out / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, cfg.to_dict())
    return out


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The raw ``config.json`` of a run directory (any kind); one clear error if missing or unreadable."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a nada run directory (no {CONFIG})", "check the --resume path")
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return d


def run_evaluator(cfg: dict[str, Any]) -> str:
    """The judge of a run's images ('shapes' or ''): its config's ``evaluator``, or for runs
    recorded before there was one, the recipe of its source generator."""
    if cfg.get("evaluator") is not None:
        return str(cfg["evaluator"])
    from ..recipe import generator_recipe

    recipe = generator_recipe(cfg.get("generator") or "shapes")
    return (recipe.evaluator or "") if recipe else ""


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config of an existing `nada train` run (for ``--resume``)."""
    d = read_run_config(run_dir)
    if d.get("kind") == "mapper":
        raise ConfigError(f"{run_dir} is a mapper run, not a `nada train` run",
                          f"resume it with: nada mapper train --resume {run_dir}")
    return TrainConfig.from_dict(d)


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


class MetricsLog:
    """Append-only ``metrics.jsonl``, one JSON object per iteration (flushed per line)."""

    def __init__(self, path: Path, write: bool = True):
        self.path = path
        self.write = write  # False: a data-parallel rank other than 0 (rank 0 keeps the log)

    def append(self, record: dict[str, Any]) -> None:
        if not self.write:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()

    def truncate_after(self, iteration: int) -> None:
        """Drop records past ``iteration`` (written after the checkpoint a resume starts from)."""
        if not self.write or not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("iter", 0) <= iteration]
        text = "".join(line + "\n" for line in keep)

        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write(text)

        atomic_write(self.path, write)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every RNG a run could touch: its own generator, torch's global CPU/CUDA RNGs, numpy's."""
    state: dict[str, Any] = {
        "run": gen.get_state(),
        "torch_cpu": torch.get_rng_state(),
        "numpy": _numpy_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(gen: torch.Generator, state: dict[str, Any]) -> None:
    gen.set_state(state["run"])
    torch.set_rng_state(state["torch_cpu"])
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def _numpy_state() -> tuple:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))


def save_state(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write the resumable state atomically to ``checkpoints/resume.pt``."""
    state = {**state, "version": STATE_VERSION}
    return atomic_write(run_dir / CHECKPOINTS / RESUME, lambda tmp: torch.save(state, tmp))


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINTS / RESUME
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt/truncated file: say which
        raise ConfigError(f"{path}: cannot read the resumable checkpoint ({exc})") from exc
    if state.get("version") != STATE_VERSION:
        raise ConfigError(f"{path}: state version {state.get('version')!r}, expected {STATE_VERSION}")
    return state


def save_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
