"""The NADA training loop: validate everything, then adapt the trainable twin step by step,
writing metrics, sample grids and resumable checkpoints into the run directory."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, DataError
from ..hooks import CtrlC, RunHooks
from ..recipe import RECIPE_KEY
from . import rundir
from .adapters import StyleAdapter
from .config import LOSS_WEIGHTS, TrainConfig, generator_adam, resolve_k
from .layers import (
    LayerSelection,
    candidate_indices,
    manual_layers,
    names_for_indices,
    select_layers,
    set_trainable,
)
from .twin import TwinGenerator

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class Objective(Protocol):
    """What the trainer needs from CLIP guidance (see :mod:`nada.adapt.objective`)."""

    def global_loss(self, img: torch.Tensor) -> torch.Tensor:
        """Scalar global CLIP loss of images towards the target (used by the layer search)."""

    def losses(self, frozen_img: torch.Tensor, train_img: torch.Tensor, weights: dict[str, float],
               rng: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Unweighted scalar loss terms for every name in ``weights`` with a positive weight
        (``direction``, ``global``, ``norm``, ``manifold``, ``patch``); random choices (patch
        positions) draw from ``rng``, the run's CPU generator, so that resume stays exact."""


@dataclass
class RunResult:
    """What a run produced."""

    run_dir: Path                               # the run directory
    iterations: int                             # iterations completed (in total, across resumes)
    interrupted: bool = False                   # stopped by SIGINT or hooks.stop; resumable
    generator_path: Path | None = None          # nada-format adapted generator, or the domain file of an
                                                # --adapter run (None if interrupted)
    rosinality_path: Path | None = None         # rosinality export (None if not exportable)
    rosinality_note: str | None = None          # why rosinality's own class cannot rebuild it (None if it can)
    eval: dict[str, Any] | None = None          # nada.shapes.evaluate metrics (shapes world only)
    eval_table: str | None = None               # the same, formatted
    seconds: float = 0.0                        # wall time of this call's training loop
    history: list[dict[str, Any]] = field(default_factory=list)  # this call's metrics records


@dataclass
class Prepared:
    """Everything validated and loaded, nothing written yet."""

    cfg: TrainConfig
    device: torch.device
    twin: TwinGenerator
    objective: Objective
    generator_path: Path
    allowed_layers: list[str]                   # layers that may learn
    state: dict[str, Any] | None = None         # resumable state (resume only)
    recipe: dict[str, Any] | None = None        # the base generator's recipe, carried into the adapted one


# --- preparation (all validation happens here, before anything is written) -----------------

def check_style_dir(path: str) -> list[Path]:
    """The image files of a style folder; one clear error if it is missing or has none."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DataError(f"style image folder {path!r} does not exist", "pass a folder of images with --style-images")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"style image folder {path!r} has no images ({', '.join(IMAGE_SUFFIXES)})",
                        "put a few target-style images in it")
    return files


def prepare(cfg: TrainConfig, objective: Objective | None = None,
            generators: dict[str, Any] | None = None) -> Prepared:
    """Resolve and load everything a run needs, raising one clear error for the first problem:
    run directory, device, generator(s), layer spec, style folder, CLIP models, prompt words.
    ``generators`` (path → loaded generator) lets several runs share one load (``train-many``):
    the frozen twin is never written, the trainable one is a copy."""
    from ..checkpoints import load_generator
    from ..device import resolve_device
    from ..hub import resolve_generator

    if cfg.resume:
        saved = rundir.load_run_config(cfg.out)
        cfg = saved.replace(out=cfg.out, resume=True, overwrite=False, iters=cfg.iters, quiet=cfg.quiet,
                            device=cfg.device)  # `out` as given: the run may have been moved
    rundir.check_run_dir(cfg)
    device = resolve_device(cfg.device)
    if cfg.style_images is not None:
        check_style_dir(cfg.style_images)
    if cfg.evaluates_on_shapes and cfg.evaluate and cfg.target is not None:
        from ..shapes.evaluate import parse_target

        parse_target(cfg.target)  # the final evaluation must know the target style or colour
    gen_path = resolve_generator(cfg.generator)
    key = f"{gen_path}@{device}"
    loaded = generators.get(key) if generators is not None else None
    if loaded is None:
        loaded = load_generator(gen_path, device=device)
        if generators is not None:
            generators[key] = loaded
    G = loaded.generator
    train_syn = None
    if cfg.train_generator is not None:
        train_syn = load_generator(resolve_generator(cfg.train_generator), device=device).generator.synthesis
    twin = TwinGenerator(G, train_syn)
    allowed = manual_layers(cfg.layers, twin.layers(), G.img_resolution)
    if cfg.auto_layer_iters > 0 and not candidate_indices(twin.layers(), allowed):
        raise ConfigError(f"--layers {cfg.layers!r} selects no conv layer for the layer search",
                          "include conv layers (b8.conv0, b16.*) or use --auto-layer-iters 0")
    if objective is None:
        from .objective import ClipObjective

        objective = ClipObjective.from_config(cfg, device, twin)
    state = None
    if cfg.resume:
        state = rundir.load_state(Path(cfg.out))
        if state["iteration"] > cfg.iters:
            raise ConfigError(f"the run is already at iteration {state['iteration']} > --iters {cfg.iters}",
                              f"pass --iters {state['iteration']} or more")
    return Prepared(cfg, device, twin, objective, gen_path, allowed, state, loaded.metadata.get(RECIPE_KEY))


# --- the loop --------------------------------------------------------------------------------

class Trainer:
    """One NADA run over a :class:`Prepared` bundle."""

    def __init__(self, prep: Prepared, run_dir: Path, hooks: RunHooks | None = None, dist=None):
        self.prep = prep
        self.dist = dist  # nada.adapt.distributed.DistContext under torchrun (data parallel), else None
        self.main = dist is None or dist.is_main  # only rank 0 writes the run directory
        self.hooks = hooks or RunHooks()  # progress callbacks and a stop flag (web demo, tests)
        self.cfg = cfg = prep.cfg
        self.twin = prep.twin
        self.objective = prep.objective
        self.run_dir = run_dir
        self.layers = self.twin.layers()
        self.allowed = prep.allowed_layers
        self.candidates = candidate_indices(self.layers, self.allowed)
        # Blocks below every layer that may learn are computed once for both twins per step.
        self.shared_res = self.twin.shared_until(self.allowed)
        self.k = resolve_k(cfg.auto_layer_k, len(self.candidates), self.twin.num_ws)
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.weights = {name.removeprefix("lambda_"): float(getattr(cfg, name)) for name in LOSS_WEIGHTS}
        self.adapter: StyleAdapter | None = None
        if cfg.adapter == "full":
            # Adam over every synthesis parameter: layers frozen in a step have no grad and are skipped.
            self.params = list(self.twin.trainable.parameters())
        else:  # a domain adapter on the allowed layers; the trainable twin keeps the base weights
            self.adapter = StyleAdapter.for_layers(cfg.adapter, self.twin.trainable, self.allowed)
            self.adapter.attach(self.twin.trainable)
            self.adapter.set_learnable([])
            self.params = list(self.adapter.parameters())
        self.opt = torch.optim.Adam(self.params, lr=cfg.adam_lr, betas=cfg.adam_betas)
        self.metrics = rundir.MetricsLog(run_dir / rundir.METRICS, write=self.main)
        self.ddp = None
        if dist is not None:
            from .distributed import wrap_data_parallel

            self.ddp = wrap_data_parallel(dist, self.twin.trainable, self.adapter)
        self.iteration = 0
        self.selection: LayerSelection | None = None  # last search result (reused auto_layer_every steps)
        self.ctrl_c = CtrlC("interrupt: finishing this iteration and saving a resumable checkpoint "
                            "(Ctrl-C again to abort)")
        self._base: dict[str, Any] | None = None  # the domain file's base record (computed once)
        from ..cpu import ThreadGovernor

        self.governor = ThreadGovernor()  # follows the free cores where the thread count is automatic

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        learnt = self.adapter if self.adapter is not None else self.twin.trainable
        return {
            "iteration": self.iteration,
            "adapter": self.cfg.adapter,
            "trainable": {k: v.detach().cpu().clone() for k, v in learnt.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "rng": rundir.rng_state(self.rng),
            "selection": None if self.selection is None else {
                "w_indices": list(self.selection.w_indices), "names": list(self.selection.names),
                "scores": list(self.selection.scores)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("adapter", "full") != self.cfg.adapter:
            raise ConfigError(f"the checkpoint holds a {state.get('adapter', 'full')} run, the config a {self.cfg.adapter} one",
                              "resume it with the config.json it was written with")
        (self.adapter if self.adapter is not None else self.twin.trainable).load_state_dict(state["trainable"])
        self.opt.load_state_dict(state["optimizer"])
        rundir.set_rng_state(self.rng, state["rng"])
        self.iteration = int(state["iteration"])
        sel = state.get("selection")
        self.selection = None if sel is None else LayerSelection(
            tuple(sel["w_indices"]), tuple(sel["names"]), tuple(sel["scores"]))
        self.metrics.truncate_after(self.iteration)
        self.shared_res = self.twin.shared_until(self.allowed)

    def save_resumable(self) -> Path | None:
        return rundir.save_state(self.run_dir, self.state_dict()) if self.main else None

    # -- one step -------------------------------------------------------------------------
    def choose_layers(self) -> tuple[LayerSelection, float]:
        """Adaptive selection (search) or the fixed manual set; returns it and the search time."""
        cfg = self.cfg
        if cfg.auto_layer_iters <= 0:
            return LayerSelection(tuple(sorted({r.w_index for r in self.layers if r.name in self.allowed})),
                                  tuple(self.allowed)), 0.0
        if self.selection is not None and self.iteration % cfg.auto_layer_every != 0:
            return self.selection, 0.0
        t0 = time.perf_counter()
        ws = self.twin.sample_ws(cfg.auto_layer_batch, self.rng, 0.0, cfg.truncation)
        noise = self.twin.make_noise(cfg.auto_layer_batch, self.rng) if cfg.noise_mode == "random" else None
        idx, scores = select_layers(
            self.twin.trainable, ws, self.objective.global_loss, self.k,
            iters=cfg.auto_layer_iters, lr=cfg.auto_layer_lr, candidates=self.candidates, noise=noise,
        )
        names = names_for_indices(self.layers, idx, self.allowed)
        self.selection = LayerSelection(tuple(idx), tuple(names), tuple(float(s) for s in scores))
        if self.dist is not None:  # every rank ran the same search; rank 0's choice is the one trained
            from .distributed import broadcast_object

            self.selection = broadcast_object(self.dist, self.selection)
        return self.selection, time.perf_counter() - t0

    def step(self) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        selection, search_s = self.choose_layers()
        if self.adapter is None:
            set_trainable(self.twin.trainable, self.layers, selection.names)
        else:
            self.adapter.set_learnable(selection.names)
        world = 1 if self.dist is None else self.dist.world
        # Data parallel: every rank draws the whole N·B batch from the same stream and trains its share.
        ws = self.twin.sample_ws(cfg.batch * world, self.rng, cfg.mixing, cfg.truncation)
        noise = self.twin.make_noise(cfg.batch * world, self.rng) if cfg.noise_mode == "random" else None
        if world > 1:
            mine = slice(self.dist.rank * cfg.batch, (self.dist.rank + 1) * cfg.batch)
            ws = ws[mine]
            noise = None if noise is None else {k: v[mine] for k, v in noise.items()}
        frozen_img, train_img = self.twin.forward_pair(ws, noise, self.shared_res, trainable=self.ddp)
        terms = self.objective.losses(frozen_img, train_img, self.weights, rng=self.rng)
        loss = sum(self.weights[name] * value for name, value in terms.items())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        base_lr = cfg.lr_at(self.iteration)
        for group in self.opt.param_groups:
            group["lr"] = generator_adam(base_lr)[0]
        self.opt.step()
        self.twin.trainable.requires_grad_(False)
        if self.adapter is not None:
            self.adapter.set_learnable([])
        self.iteration += 1
        values = [float(loss.detach())] + [float(v.detach()) for v in terms.values()]
        if self.dist is not None:  # the log holds the whole batch's figures
            from .distributed import mean_over_ranks

            values = mean_over_ranks(self.dist, values)
        record: dict[str, Any] = {
            "iter": self.iteration,
            "loss": values[0],
            "lr": base_lr,
            **{f"loss_{name}": v for name, v in zip(terms, values[1:])},
            "layers": list(selection.names),
            "w_indices": list(selection.w_indices),
            "time_s": round(time.perf_counter() - t0, 5),
            "search_s": round(search_s, 5),
        }
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"loss became {record['loss']} at iteration {self.iteration}")
        return record

    # -- outputs --------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, name: str) -> Path:
        """Frozen (top row) vs adapted (bottom row) for the fixed sample seeds."""
        from ..networks.sampling import image_grid, parse_seeds, to_uint8, z_from_seeds

        seeds = parse_seeds(self.cfg.sample_seeds)
        dev = self.twin.mapping.w_avg.device
        z = z_from_seeds(seeds, self.twin.z_dim).to(dev)
        ws = self.twin.mapping(z, self.cfg.sample_truncation)
        rows = []
        for syn in (self.twin.frozen, self.twin.trainable):
            rows.append(np.concatenate([to_uint8(syn(chunk, noise_mode="const")) for chunk in ws.split(8)]))
        grid = image_grid(np.concatenate(rows), cols=len(seeds), pad=2)
        return rundir.save_png(self.run_dir / rundir.SAMPLES / f"{name}.png", grid)

    def save_generator(self, path: Path) -> Path:
        """The adapted generator (full runs) or the domain file (adapter runs)."""
        from ..checkpoints import save_generator

        if self.adapter is not None:
            return self.save_domain(path)
        meta = {"nada_train": self.cfg.to_dict(), "iteration": self.iteration,
                "source_generator": str(self.prep.generator_path)}
        if self.prep.recipe is not None:  # the adapted generator is adapted and judged the same way
            meta[RECIPE_KEY] = self.prep.recipe
        return save_generator(self.twin.generator("trainable"), path, metadata=meta)

    def save_domain(self, path: Path) -> Path:
        from ..domains import base_record, save_domain

        if self._base is None:
            self._base = base_record(self.cfg.generator, self.prep.generator_path, self.twin.generator("frozen"))
        info = {"source": self.cfg.source, "target": self.cfg.target, "iteration": self.iteration,
                "nada_train": self.cfg.to_dict()}
        return save_domain(self.adapter.tensors(), self.cfg.adapter, path, self._base, info)

    def output_name(self, stem: str) -> str:
        """File name of a saved result: ``.safetensors`` generator, or ``.domain.safetensors``."""
        return f"{stem}.domain.safetensors" if self.adapter is not None else f"{stem}.safetensors"

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> RunResult:
        from tqdm import tqdm

        cfg = self.cfg
        result = RunResult(self.run_dir, self.iteration)
        bar = tqdm(total=cfg.iters, initial=self.iteration, desc="nada train", unit="it",
                   disable=cfg.quiet or not self.main, dynamic_ncols=True)
        log_every = max(1, cfg.iters // 10)
        t_start = time.perf_counter()
        self.ctrl_c.install()
        try:
            while self.iteration < cfg.iters:
                self.governor.tick()
                record = self.step()
                self.metrics.append(record)
                result.history.append(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", layers=",".join(map(str, record["w_indices"])))
                it = self.iteration
                if self.main and cfg.quiet and (it % log_every == 0 or it == cfg.iters):
                    log.info("iter %d/%d loss %.4f layers %s (%.2f s/it)", it, cfg.iters, record["loss"],
                             record["w_indices"], record["time_s"])
                self.hooks.step(record, cfg.iters)
                if self.main and cfg.sample_every and it % cfg.sample_every == 0 and it < cfg.iters:
                    self.hooks.sample(self.sample_grid(f"iter_{it:06d}"))
                if self.main and cfg.save_every and it % cfg.save_every == 0 and it < cfg.iters:
                    self.save_generator(self.run_dir / rundir.CHECKPOINTS / self.output_name(f"iter_{it:06d}"))
                    self.save_resumable()
                stop = self.ctrl_c.requested or self.hooks.stopping
                if self.dist is not None:
                    from .distributed import any_rank

                    stop = any_rank(self.dist, stop)
                if stop:  # Ctrl-C or hooks.stop: same clean stop
                    self.save_resumable()
                    result.interrupted = True
                    if self.main:
                        log.warning("interrupted at iteration %d; resume with: nada train --resume %s", it, self.run_dir)
                    break
        finally:
            bar.close()
            self.ctrl_c.restore()
        result.seconds = time.perf_counter() - t_start
        result.iterations = self.iteration
        if result.interrupted or not self.main:
            return result
        return self.finish(result)

    def finish(self, result: RunResult) -> RunResult:
        """The end of a completed run: resumable state, final grids, the product, the evaluation."""
        cfg = self.cfg
        self.save_resumable()
        self.sample_grid(f"iter_{self.iteration:06d}")
        self.hooks.sample(self.sample_grid("final"))
        if self.adapter is not None:
            result.generator_path = self.save_domain(self.run_dir / rundir.DOMAIN)
        else:
            result.generator_path = self.save_generator(self.run_dir / rundir.GENERATOR)
            result.rosinality_path = self._export_rosinality()
        if result.rosinality_path is not None:
            from ..checkpoints.core import rosinality_limits

            result.rosinality_note = rosinality_limits(self.twin.generator("trainable").cfg)
        if cfg.evaluates_on_shapes and cfg.evaluate and cfg.target is not None:
            result.eval, result.eval_table = self._evaluate()
        return result

    def _export_rosinality(self) -> Path | None:
        from ..checkpoints import export_rosinality

        try:
            return export_rosinality(self.twin.generator("trainable"), self.run_dir / rundir.ROSINALITY,
                                     metadata={"iteration": self.iteration}, warn=False)
        except CheckpointError as exc:
            log.warning("no rosinality export: %s", exc)
            return None

    def _evaluate(self) -> tuple[dict[str, Any], str]:
        from ..shapes import evaluate

        encoders = getattr(self.objective, "encoders", None)
        metrics = evaluate.evaluate(self.twin.generator("frozen"), self.twin.generator("trainable"),
                                    self.cfg.target, seeds=range(self.cfg.eval_seeds),
                                    clip=encoders[0] if encoders else None,
                                    source_text=self.cfg.source, target_text=self.cfg.target)
        rundir.write_json(self.run_dir / rundir.EVAL, metrics)
        return metrics, evaluate.format_table(metrics)


def train(cfg: TrainConfig, objective: Objective | None = None, hooks: RunHooks | None = None,
          dist=None, generators: dict[str, Any] | None = None) -> RunResult:
    """Run NADA as ``cfg`` says (Python API of ``nada train``). ``objective`` replaces the CLIP
    guidance built from ``cfg`` (tests, custom losses); ``hooks`` get each step's record and each
    sample grid, and ``hooks.stop`` ends the run as Ctrl-C does (resumable, ``interrupted``).
    ``dist`` (:func:`nada.adapt.distributed.init_from_env`): data parallel over torchrun's ranks,
    effective batch world · ``cfg.batch``; rank 0 writes the run directory. ``generators``: see
    :func:`prepare` (runs in one process sharing one load).
    Everything is validated before the run directory is created."""
    import contextlib

    from ..errors import NadaError
    from ..outputs import RunLock

    if dist is None:
        prep = prepare(cfg, objective, generators)
    else:  # every rank validates and loads; none writes before all have succeeded
        from .distributed import gather_errors

        prep, error = None, None
        try:
            prep = prepare(cfg, objective, generators)
        except NadaError as exc:
            error = str(exc)
        gather_errors(dist, error)
    main = dist is None or dist.is_main
    lock = RunLock(prep.cfg.out) if main else contextlib.nullcontext()
    with lock:  # a second process on the same --out is refused, not interleaved
        run_dir = rundir.create_run_dir(prep.cfg) if main else Path(prep.cfg.out)
        if dist is not None:
            import torch.distributed

            torch.distributed.barrier()  # the run directory exists before any rank reads or logs
        trainer = Trainer(prep, run_dir, hooks, dist)
        if prep.state is not None:
            trainer.load_state_dict(prep.state)
            log.info("resuming %s at iteration %d", run_dir, trainer.iteration)
        return trainer.run()
