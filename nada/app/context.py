"""What every tab of the web demo shares: the runs folder (listed by name, never by a path from
the browser), the one-job-at-a-time runner, the device, and a scratch folder for downloads."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .jobs import JobRunner

log = logging.getLogger(__name__)

UPLOADS = ".uploads"     # inside the runs folder: validated uploads, content-addressed
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAX_DEPTH = 2           # runs/NAME and runs/GROUP/NAME (e.g. a CLI --out runs/exp/sketch)

# What a visitor may download from a run: key -> path inside the run directory.
DOWNLOADS = {
    "generator": "generator.safetensors",
    "domain": "domain.safetensors",
    "rosinality": "generator_rosinality.pt",
    "samples": "samples/final.png",
    "mapper": "mapper.safetensors",
}
TRAIN, MAPPER = "train", "mapper"   # kinds of run: `nada train` and `nada mapper train`
_PRODUCT = {TRAIN: ("generator.safetensors", "domain.safetensors"),  # written when a run finishes
            MAPPER: ("mapper.safetensors",)}


@dataclass(frozen=True)
class RunInfo:
    """One run of the runs folder, as the page lists it."""

    name: str                      # path relative to the runs folder, '/'-separated
    config: dict[str, Any]         # its config.json
    finished: bool                 # generator.safetensors or domain.safetensors (mapper run: mapper.safetensors) written
    resumable: bool                # checkpoints/resume.pt present
    iterations: int                # steps in metrics.jsonl (0 if none)
    mtime: float                   # config.json's modification time

    @property
    def kind(self) -> str:
        return MAPPER if self.config.get("kind") == MAPPER else TRAIN

    @property
    def label(self) -> str:
        cfg = self.config
        target = cfg.get("target") or ("style images" if cfg.get("style_images") else "?")
        state = "" if self.finished else f" · stopped at {self.iterations}" if self.resumable else " · unfinished"
        if self.kind == MAPPER:
            return f"{self.name} · edit: {target}{state}"
        return f"{self.name} · {cfg.get('source', '?')} → {target}{state}"


@dataclass
class AppContext:
    """Shared state of one app: tabs get it from ``build_app`` (see nada.app.tabs)."""

    runs_dir: Path                                   # every run the app lists, writes and serves
    jobs: JobRunner = field(default_factory=JobRunner)  # one job at a time, FIFO
    device: str = "auto"                             # torch device for training and viewing
    scratch_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nada-app-")))

    def __post_init__(self) -> None:
        self.runs_dir = Path(self.runs_dir).expanduser().resolve()

    @property
    def uploads_dir(self) -> Path:
        return self.runs_dir / UPLOADS

    # -- runs ------------------------------------------------------------------------------
    def list_runs(self, finished_only: bool = False, kind: str = TRAIN) -> list[RunInfo]:
        """Runs of one kind (``nada train`` runs by default, or mapper runs) under the runs
        folder, newest first."""
        if not self.runs_dir.is_dir():
            return []
        found: list[RunInfo] = []
        for cfg_path in self._config_files():
            info = _read_run(self.runs_dir, cfg_path.parent)
            if info is None or info.kind != kind or (finished_only and not info.finished):
                continue
            try:
                self.run_dir(info.name)  # the same rule as every request: no links out, plain names
            except ConfigError:
                continue
            found.append(info)
        return sorted(found, key=lambda r: r.mtime, reverse=True)

    def _config_files(self):
        for depth in range(1, _MAX_DEPTH + 1):
            yield from self.runs_dir.glob("/".join(["*"] * depth) + "/config.json")

    def run_dir(self, name: str) -> Path:
        """The run called ``name`` (as listed); ConfigError for anything else, including names
        that climb out of the runs folder or point through a link."""
        parts = str(name or "").split("/")
        if not name or len(parts) > _MAX_DEPTH or not all(_PART.match(p) for p in parts):
            raise ConfigError(f"no run named {name!r}", "pick one from the list (Refresh updates it)")
        path = self.runs_dir.joinpath(*parts)
        real = path.resolve()
        if real.parent != self.runs_dir.joinpath(*parts[:-1]).resolve() or not real.is_relative_to(self.runs_dir) \
                or not (real / "config.json").is_file():
            raise ConfigError(f"no run named {name!r}", "pick one from the list (Refresh updates it)")
        return real

    def run_file(self, name: str, key: str) -> Path:
        """A downloadable file of a run (``key`` of DOWNLOADS), checked to lie inside it."""
        if key not in DOWNLOADS:
            raise ConfigError(f"unknown download {key!r}", f"one of {', '.join(DOWNLOADS)}")
        run = self.run_dir(name)
        path = (run / DOWNLOADS[key]).resolve()
        if not path.is_relative_to(run) or not path.is_file():
            raise ConfigError(f"run {name!r} has no {DOWNLOADS[key]}", "wait until the run has finished")
        return path

    def export(self, name: str, key: str) -> Path:
        """A download of a run's file (``run_file``) linked (or copied) into the scratch folder,
        named ``<run>_<file>``: the page serves that, never a path inside the runs folder."""
        src = self.run_file(name, key)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(dir=self.scratch_dir)) / f"{name.replace('/', '_')}_{src.name}"
        try:
            os.link(src, dest)
        except OSError:  # another file system
            shutil.copyfile(src, dest)
        return dest

    def new_run_name(self, label: str) -> str:
        """A fresh run name: time stamp + a slug of ``label``; nothing is created."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:40] or "run"
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
        name, n = base, 1
        while (self.runs_dir / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def scratch_file(self, suffix: str) -> Path:
        """A new file name in the scratch folder (outside the runs folder), for downloads the
        app renders (Explore's PNG)."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=suffix, dir=self.scratch_dir)
        os.close(fd)
        return Path(name)

    def close(self) -> None:
        self.jobs.close(timeout=30)
        shutil.rmtree(self.scratch_dir, ignore_errors=True)


def _read_run(root: Path, run: Path) -> RunInfo | None:
    if any(part.startswith(".") for part in run.relative_to(root).parts):
        return None
    try:
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or "target" not in cfg or "generator" not in cfg:
        return None  # not a nada run
    iters = 0
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        try:
            iters = sum(1 for line in metrics.read_text().splitlines() if line.strip())
        except OSError:
            pass
    return RunInfo(
        name=run.relative_to(root).as_posix(), config=cfg,
        finished=any((run / f).is_file() for f in _PRODUCT[MAPPER if cfg.get("kind") == MAPPER else TRAIN]),
        resumable=(run / "checkpoints" / "resume.pt").is_file(), iterations=iters,
        mtime=(run / "config.json").stat().st_mtime,
    )
