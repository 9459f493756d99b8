"""Frozen vs adapted images for the Explore tab: cached generators, the domain blend (a lerp of
the synthesis weights), grids of several runs, and evaluation on demand. No Gradio here."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..hub import RUN_DOMAIN, run_product

log = logging.getLogger(__name__)

_MAX_SEEDS = 16
_CACHE_SIZE = 8


@torch.no_grad()
def blend_synthesis(out: torch.nn.Module, frozen: torch.nn.Module, adapted: torch.nn.Module, alpha: float) -> None:
    """Set ``out``'s synthesis weights to ``lerp(frozen, adapted, alpha)`` in place (0 = frozen,
    1 = adapted, exactly); mapping and ``w_avg`` stay the frozen ones (NADA never trains them)."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"domain blend {alpha!r} must be in [0, 1]")
    f_sd, a_sd = frozen.synthesis.state_dict(), adapted.synthesis.state_dict()
    if f_sd.keys() != a_sd.keys() or any(f_sd[k].shape != a_sd[k].shape for k in f_sd):
        raise CheckpointError("the adapted generator does not match its source generator's architecture",
                              "blend only a run's own adapted and frozen generators")
    for key, dst in out.synthesis.state_dict().items():
        f, a = f_sd[key], a_sd[key]
        dst.copy_(torch.lerp(f, a, float(alpha)) if f.is_floating_point() else a)


class GeneratorCache:
    """Loaded generators keyed by (file, mtime, size), least recently used dropped; thread-safe."""

    def __init__(self, device: torch.device, size: int = _CACHE_SIZE):
        self.device = device
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path):
        from ..checkpoints import load_generator

        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        G = load_generator(path, device=self.device).generator
        with self._lock:
            self._items[key] = G
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return G


def source_generator_path(generator_spec: str) -> Path:
    """The frozen generator a run started from, without downloading anything in a page request."""
    from .. import paths
    from ..hub import KNOWN, resolve_generator

    if generator_spec in KNOWN:
        cached = paths.weights_cache_dir() / KNOWN[generator_spec].filename
        if not cached.is_file():
            raise CheckpointError(f"the source generator {generator_spec!r} is not in the weights cache",
                                  f"run: nada download {generator_spec}")
        return cached
    if "://" in str(generator_spec):
        raise CheckpointError("this run's source generator is a URL", "download it and retrain from the file")
    return resolve_generator(generator_spec)


@dataclass
class RunView:
    """What Explore shows for one run."""

    name: str
    frozen: np.ndarray     # uint8 [N, H, W, 3]
    blended: np.ndarray    # uint8 [N, H, W, 3]
    source_spec: str


class Viewer:
    """Renders runs for Explore; one blend buffer per run so requests never copy a generator."""

    def __init__(self, device: torch.device):
        self.cache = GeneratorCache(device)
        self._buffers: dict[str, tuple[Any, Any, threading.Lock]] = {}
        self._lock = threading.Lock()
        self.last_tile = 64  # image side of the last render (for display scaling)

    def _buffer(self, adapted_path: Path, adapted):
        key = str(adapted_path)
        with self._lock:
            entry = self._buffers.get(key)
            if entry is None or entry[0] is not adapted:
                entry = (adapted, copy.deepcopy(adapted), threading.Lock())
                self._buffers[key] = entry
                while len(self._buffers) > _CACHE_SIZE:
                    self._buffers.pop(next(iter(self._buffers)))
            return entry[1], entry[2]

    def render(self, name: str, run_dir: Path, seeds: list[int], truncation: float, alpha: float) -> RunView:
        from ..networks.sampling import generate_images

        if len(seeds) > _MAX_SEEDS:
            raise ConfigError(f"{len(seeds)} seeds; the page shows at most {_MAX_SEEDS}", "use e.g. 0-7")
        if not 0.0 <= truncation <= 1.0:
            raise ConfigError(f"truncation {truncation!r} must be in [0, 1]")
        cfg = json.loads((run_dir / "config.json").read_text())
        adapted_path = run_product(run_dir)
        if adapted_path is None:
            raise ConfigError(f"run {name!r} has no adapted generator yet", "wait until it finishes, or resume it")
        spec = str(cfg.get("generator") or "shapes")
        if adapted_path.name == RUN_DOMAIN:  # a domain run: the domain at weight alpha on its base
            frozen_imgs, mixed = self.render_domains(spec, [(adapted_path, float(alpha))], seeds, truncation)
            return RunView(name, frozen_imgs, mixed, spec)
        frozen = self.cache.get(source_generator_path(spec))
        adapted = self.cache.get(adapted_path)
        blend, lock = self._buffer(adapted_path, adapted)
        with lock:
            blend_synthesis(blend, frozen, adapted, alpha)
            blended = generate_images(blend, seeds, truncation)
        self.last_tile = int(blended.shape[1])
        return RunView(name, generate_images(frozen, seeds, truncation), blended, spec)


    def render_domains(self, base_spec: str, domains: list[tuple[Path, float]], seeds: list[int],
                       truncation: float) -> tuple[np.ndarray, np.ndarray]:
        """(base images, images with the weighted domains applied on the fly) for ``seeds``."""
        from ..domains import apply, check_base, read_domain
        from ..networks.sampling import generate_images

        if len(seeds) > _MAX_SEEDS:
            raise ConfigError(f"{len(seeds)} seeds; the page shows at most {_MAX_SEEDS}", "use e.g. 0-7")
        base_path = source_generator_path(base_spec)
        base = self.cache.get(base_path)
        files = [(read_domain(p), float(w)) for p, w in domains]
        for d, _ in files:
            check_base(d, base_path, base)
        frozen = generate_images(base, seeds, truncation)
        work, lock = self._buffer(Path(f"{base_path}#domains"), base)  # hooks go on a copy, never the cached base
        with lock:
            hooks = apply(work, files)
            try:
                mixed = generate_images(work, seeds, truncation)
            finally:
                hooks.remove()
        self.last_tile = int(mixed.shape[1])
        return frozen, mixed


def domain_runs(ctx, base_spec: str | None = None) -> list:
    """Finished ``--adapter`` runs of the runs folder (on ``base_spec`` when given), newest first."""
    out = []
    for info in ctx.list_runs(finished_only=True):
        if info.config.get("adapter", "full") == "full":
            continue
        if base_spec is not None and str(info.config.get("generator") or "shapes") != base_spec:
            continue
        out.append(info)
    return out


def mix_view(ctx, viewer: "Viewer", names: list[str], weights: list[float], seeds: list[int],
             truncation: float) -> tuple[np.ndarray, str]:
    """The base row above the row of ``names``' domains mixed at ``weights`` (grid, caption)."""
    from ..networks.sampling import image_grid

    names = [n for n in names if n]
    if not names:
        raise ConfigError("no domain chosen", "pick one or more domain runs (trained with a StyleSpace or "
                          "modulation adapter)")
    cfgs = [json.loads((ctx.run_dir(n) / "config.json").read_text()) for n in names]
    if any(c.get("adapter", "full") == "full" for c in cfgs):
        bad = names[[c.get("adapter", "full") for c in cfgs].index("full")]
        raise ConfigError(f"run {bad!r} is a whole generator, not a domain", "mix runs trained with an adapter")
    bases = {str(c.get("generator") or "shapes") for c in cfgs}
    if len(bases) > 1:
        raise ConfigError("the chosen domains were trained on different generators", "mix domains of one base")
    paths = [(run_product(ctx.run_dir(n)), float(w)) for n, w in zip(names, weights)]
    frozen, mixed = viewer.render_domains(bases.pop(), paths, seeds, truncation)
    grid = image_grid(np.concatenate([frozen, mixed]), cols=len(seeds), pad=2)
    parts = " + ".join(f"{w:g} × `{n}` ({c.get('target')})" for n, w, c in zip(names, weights, cfgs))
    return grid, f"Top: the base generator. Bottom: {parts}."


def compose(views: list[RunView], pad: int = 2) -> np.ndarray:
    """One image: for each run its frozen row then its blended row; a frozen row shared by
    consecutive runs of the same source generator is drawn once. Rows scaled to one size."""
    from PIL import Image

    from ..networks.sampling import image_grid

    side = max(v.frozen.shape[1] for v in views)
    rows: list[np.ndarray] = []
    last_source = None
    for v in views:
        if v.source_spec != last_source:
            rows.append(v.frozen)
            last_source = v.source_spec
        rows.append(v.blended)
    cols = len(views[0].frozen)

    def fit(images: np.ndarray) -> np.ndarray:
        if images.shape[1] == side:
            return images
        return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BICUBIC)) for im in images])

    return image_grid(np.concatenate([fit(r) for r in rows]), cols=cols, pad=pad)


def evaluate_run(run_dir: Path, device: torch.device) -> dict[str, Any]:
    """The run's eval.json, computed with the shapes oracle (and written) when missing."""
    from ..checkpoints import load_generator
    from ..shapes.evaluate import evaluate, write_json

    path = run_dir / "eval.json"
    if path.is_file():
        return json.loads(path.read_text())
    from ..adapt.rundir import run_evaluator

    cfg = json.loads((run_dir / "config.json").read_text())
    if run_evaluator(cfg) != "shapes":
        raise ConfigError("only runs on the shapes world can be evaluated",
                          "the oracle judges generators whose recipe names it (the shipped shapes generator's does)")
    if not cfg.get("target"):
        raise ConfigError("this run has no target text (style images)", "the oracle needs a named target style")
    if run_product(run_dir) is None:
        raise ConfigError("this run has no adapted generator yet", "wait until it finishes, or resume it")
    frozen = load_generator(source_generator_path(cfg.get("generator") or "shapes"), device=device).generator
    adapted = load_generator(run_product(run_dir), device=device).generator
    metrics = evaluate(frozen, adapted, cfg["target"], seeds=range(int(cfg.get("eval_seeds") or 256)),
                       source_text=cfg.get("source") or "photo", target_text=cfg["target"])
    write_json(metrics, path)
    return metrics


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """The oracle's table (nada.shapes.evaluate.format_table) as a Markdown table."""
    import re

    from ..shapes.evaluate import format_table

    lines = ["| metric | value |", "|---|---|"]
    for line in format_table(metrics).splitlines():
        label, value = (re.split(r"\s{2,}", line.strip(), maxsplit=1) + [""])[:2]
        cells = [c.strip().replace("|", "\\|") for c in (label, value)]
        lines.append(f"| {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
