"""``nada mapper train``: validate everything, then learn one text-driven edit in W+ of a fixed
generator, writing a run directory as ``nada train`` does (config.json, metrics.jsonl,
samples/, checkpoints/, mapper.safetensors, eval.json)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..adapt import rundir
from ..checkpoints import atomic_write
from ..errors import ConfigError
from ..hooks import CtrlC, RunHooks
from .config import MapperConfig
from .files import LoadedMapper, check_fits, describe_generator, load_latents, load_mapper, save_mapper
from .losses import MapperObjective
from .network import LevelsMapper, MapperArch

log = logging.getLogger(__name__)

MAPPER_FILE = "mapper.safetensors"
STATE_VERSION = 1


@dataclass
class MapperResult:
    """What a mapper run produced."""

    run_dir: Path
    steps: int                                   # steps completed in total
    interrupted: bool = False                    # stopped early; resumable
    mapper_path: Path | None = None              # mapper.safetensors (None if interrupted)
    eval: dict[str, Any] | None = None           # oracle metrics (shapes world)
    eval_table: str | None = None
    seconds: float = 0.0                         # wall time of this call's loop
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MapperPrepared:
    """Everything validated and loaded; nothing written yet."""

    cfg: MapperConfig
    device: torch.device
    G: Any                                       # nada.networks.Generator (frozen)
    generator_path: Path
    generator_info: dict[str, Any]
    objective: MapperObjective
    latents: torch.Tensor                        # [N, num_ws, w_dim] on CPU
    init: LoadedMapper | None = None
    state: dict[str, Any] | None = None          # resumable state (resume only)
    eval_target: Any = None                      # shapes-world Target, when the run is evaluated


def load_mapper_config(run_dir: str | Path) -> MapperConfig:
    """The config of an existing mapper run."""
    d = rundir.read_run_config(run_dir)
    if d.get("kind") != "mapper":
        raise ConfigError(f"{run_dir} is a `nada train` run, not a mapper run",
                          "resume it with `nada train --resume`, or pass a mapper run directory")
    return MapperConfig.from_dict(d)


def default_clip(cfg: MapperConfig, metadata: dict[str, Any]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The CLIP models a mapper run uses when none are given: the generator's recipe (its
    ``mapper`` entry, else its ``train`` entry; an adapted generator carries its base's), else
    those it was adapted with, else the official ViT-B-32 + ViT-B-16 pair."""
    from ..adapt.config import OFFICIAL_CLIP
    from ..recipe import recipe_from_metadata

    if cfg.clip:
        return cfg.clip, cfg.clip_weights
    recipe = recipe_from_metadata(metadata)
    for part in ((recipe.mapper, recipe.train) if recipe else ()) + (metadata.get("nada_train") or {},):
        if part.get("clip"):
            clip = tuple(part["clip"])
            weights = tuple(part.get("clip_weights") or [1.0] * len(clip))
            return clip, weights
    return OFFICIAL_CLIP, tuple(1.0 for _ in OFFICIAL_CLIP)


def shapes_eval_target(cfg: MapperConfig, metadata: dict[str, Any]):
    """The shapes-world target the final evaluation judges, or None when the generator's recipe
    names no shapes oracle or evaluation is off."""
    from ..recipe import recipe_from_metadata
    from ..shapes.evaluate import parse_target

    recipe = recipe_from_metadata(metadata)
    if not cfg.evaluate or recipe is None or recipe.evaluator != "shapes":
        return None
    return parse_target(cfg.target)


def sample_latents(G, n: int, truncation: float, rng: torch.Generator, batch: int = 256) -> torch.Tensor:
    """``n`` W+ latents: z ~ N(0, I) drawn from ``rng`` (CPU), mapped at ``truncation``."""
    dev = G.mapping.w_avg.device
    z = torch.randn(n, G.z_dim, generator=rng)
    with torch.no_grad():
        return torch.cat([G.mapping(c.to(dev), truncation).cpu() for c in z.split(batch)])


def prepare_mapper(cfg: MapperConfig) -> MapperPrepared:
    """Resolve and load everything, raising one clear error for the first problem: run
    directory, device, generator, CLIP models and prompt words, init mapper, latents file."""
    from ..adapt.objective import check_prompt_words
    from ..checkpoints import load_generator
    from ..device import resolve_device
    from ..guidance import load_clip
    from ..hub import resolve_generator

    if cfg.resume:
        saved = load_mapper_config(cfg.out)
        cfg = saved.replace(out=cfg.out, resume=True, overwrite=False, steps=cfg.steps, quiet=cfg.quiet,
                            device=cfg.device)  # `out` as given: the run may have been moved
    rundir.check_run_dir(cfg)
    device = resolve_device(cfg.device)
    gen_path = resolve_generator(cfg.generator)
    loaded = load_generator(gen_path, device=device)
    G = loaded.generator
    clip, weights = default_clip(cfg, loaded.metadata)
    cfg = cfg.replace(clip=clip, clip_weights=weights)
    MapperArch.for_generator(G, cfg.levels)  # levels that hold no rows of this generator raise here
    init = None
    if cfg.init is not None:
        init = load_mapper(cfg.init)
        note = check_fits(init, G, gen_path)
        if tuple(init.mapper.arch.levels) != cfg.levels:
            raise ConfigError(f"--init mapper has levels {list(init.mapper.arch.levels)}, this run {list(cfg.levels)}",
                              f"pass --levels {','.join(init.mapper.arch.levels)}")
        if note:
            log.info("--init: %s", note)
    if cfg.latents is not None:
        latents = load_latents(cfg.latents, G.num_ws, G.w_dim)
    else:
        latents = None
    identity = None
    if cfg.identity is not None:
        from .identity import IdentityLoss

        identity = IdentityLoss.from_file(cfg.identity, device)
    encoders = [load_clip(spec, device) for spec in cfg.clip]
    check_prompt_words(encoders, cfg.clip, {"--target": cfg.target, "--source": cfg.source})
    eval_target = shapes_eval_target(cfg, loaded.metadata)
    objective = MapperObjective(encoders, cfg.clip_weights, cfg.target, cfg.source, identity)
    state = None
    if cfg.resume:
        state = load_mapper_state(Path(cfg.out))
        if state["step"] > cfg.steps:
            raise ConfigError(f"the run is already at step {state['step']} > --steps {cfg.steps}",
                              f"pass --steps {state['step']} or more")
    info = describe_generator(G, gen_path, cfg.generator)
    if latents is None:
        latents = sample_latents(G, cfg.num_latents, cfg.truncation, torch.Generator().manual_seed(cfg.seed))
    return MapperPrepared(cfg, device, G, gen_path, info, objective, latents, init, state, eval_target)


def load_mapper_state(run_dir: Path) -> dict[str, Any]:
    """The resumable state of a mapper run (weights-only load; one clear error if unreadable)."""
    path = run_dir / rundir.CHECKPOINTS / rundir.RESUME
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or truncated: say which file
        raise ConfigError(f"{path}: cannot read the resumable checkpoint ({exc})") from exc
    if state.get("kind") != "mapper" or state.get("version") != STATE_VERSION:
        raise ConfigError(f"{path}: not a mapper checkpoint of version {STATE_VERSION}")
    return state


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """Adam (default), or StyleCLIP's Ranger settings from the maintained pytorch_optimizer."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    try:
        from pytorch_optimizer import Ranger
    except ImportError:
        raise ConfigError("--optimizer ranger needs the pytorch_optimizer package",
                          "pip install pytorch_optimizer, or use --optimizer adam") from None
    return Ranger(params, lr=lr, betas=(0.95, 0.999), alpha=0.5, k=6, n_sma_threshold=5, eps=1e-5,
                  weight_decay=0.0, use_gc=True, gc_conv_only=False)


class MapperTrainer:
    """One mapper run over a :class:`MapperPrepared` bundle."""

    def __init__(self, prep: MapperPrepared, run_dir: Path, hooks: RunHooks | None = None):
        self.prep, self.cfg, self.run_dir = prep, prep.cfg, run_dir
        self.hooks = hooks or RunHooks()
        self.G = prep.G
        self.device = prep.device
        with torch.random.fork_rng(devices=[]):  # initial weights from the run's seed, not global state
            torch.manual_seed(self.cfg.seed)
            self.mapper = LevelsMapper(MapperArch.for_generator(self.G, self.cfg.levels)).to(self.device)
        if prep.init is not None:
            self.mapper.load_state_dict(prep.init.mapper.state_dict())
        self.mapper.train().requires_grad_(True)
        self.opt = make_optimizer(self.cfg.optimizer, self.mapper.parameters(), self.cfg.lr)
        self.rng = torch.Generator().manual_seed(self.cfg.seed + 1)  # epoch order (latents used seed)
        self.weights = self.cfg.loss_weights
        self.metrics = rundir.MetricsLog(run_dir / rundir.METRICS)
        self.step_count = 0
        self.perm = torch.randperm(len(prep.latents), generator=self.rng)
        self.pos = 0
        self.ctrl_c = CtrlC("interrupt: finishing this step and saving a resumable checkpoint (Ctrl-C again to abort)")
        self.source_feats: list[torch.Tensor | None] | None = None  # per latent, filled as drawn
        self.have = torch.zeros(len(prep.latents), dtype=torch.bool)

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"kind": "mapper", "version": STATE_VERSION, "step": self.step_count,
                "mapper": {k: v.detach().cpu().clone() for k, v in self.mapper.state_dict().items()},
                "optimizer": self.opt.state_dict(), "rng": rundir.rng_state(self.rng),
                "perm": self.perm.clone(), "pos": self.pos, "have": self.have.clone(),
                "source_feats": self.source_feats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mapper.load_state_dict(state["mapper"])
        self.opt.load_state_dict(state["optimizer"])
        rundir.set_rng_state(self.rng, state["rng"])
        self.step_count, self.perm, self.pos = int(state["step"]), state["perm"].clone(), int(state["pos"])
        self.have, self.source_feats = state["have"].clone(), state["source_feats"]
        self.metrics.truncate_after(self.step_count)

    def save_resumable(self) -> Path:
        return atomic_write(self.run_dir / rundir.CHECKPOINTS / rundir.RESUME,
                                   lambda tmp: torch.save(self.state_dict(), tmp))

    # -- one step -------------------------------------------------------------------------
    def next_indices(self) -> torch.Tensor:
        """Indices of the next latents of this epoch: every latent once per epoch, in a fresh
        order each epoch (the last batch of an epoch may be smaller)."""
        if self.pos >= len(self.perm):
            self.perm = torch.randperm(len(self.prep.latents), generator=self.rng)
            self.pos = 0
        idx = self.perm[self.pos: self.pos + self.cfg.batch]
        self.pos += len(idx)
        return idx

    @torch.no_grad()
    def source_features(self, idx: torch.Tensor) -> list[torch.Tensor | None]:
        """The losses' features of these latents' unedited images. A latent's unedited image
        never changes, so they are computed the first time a latent is drawn and kept (on the
        CPU, in the resumable state, so a resumed run uses the same numbers)."""
        missing = idx[~self.have[idx]]
        if len(missing):
            img0 = self.G.synthesis(self.prep.latents[missing].to(self.device), noise_mode="const")
            feats = self.prep.objective.source_features(img0)
            if self.source_feats is None:
                n = len(self.prep.latents)
                self.source_feats = [None if f is None else torch.zeros(n, *f.shape[1:]) for f in feats]
            for store, f in zip(self.source_feats, feats):
                if store is not None:
                    store[missing] = f.cpu()
            self.have[missing] = True
        return [None if f is None else f[idx].to(self.device) for f in self.source_feats]

    def step(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        syn = self.G.synthesis
        idx = self.next_indices()
        ws = self.prep.latents[idx].to(self.device)
        source = self.source_features(idx)
        ws_edit = self.mapper.edit(ws, self.cfg.strength)
        img1 = syn(ws_edit, noise_mode="const")
        terms = self.prep.objective.losses(source, img1, ws, ws_edit, self.weights)
        loss = sum(self.weights[name] * value for name, value in terms.items())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = self.cfg.lr_at(self.step_count)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.step_count += 1
        record = {"step": self.step_count, "iter": self.step_count, "loss": float(loss.detach()), "lr": lr,
                  **{f"loss_{k}": float(v.detach()) for k, v in terms.items()},
                  "time_s": round(time.perf_counter() - t0, 5)}
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"loss became {record['loss']} at step {self.step_count}")
        return record

    # -- outputs --------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        c = self.cfg
        return {"target": c.target, "source": c.source, "strength": c.strength, "levels": list(c.levels),
                "losses": {k: v for k, v in self.weights.items()}, "clip": list(c.clip),
                "clip_weights": list(c.clip_weights), "steps": self.step_count, "generator": self.prep.generator_info,
                "init": c.init, "nada_mapper_train": c.to_dict()}

    def save_mapper(self, path: Path) -> Path:
        return save_mapper(self.mapper, path, self.metadata())

    def sample_grid(self, name: str) -> Path:
        from .apply import edit_grid

        self.mapper.eval()
        grid = edit_grid(self.G, self.mapper, self.cfg.sample_seeds, self.cfg.strength, self.cfg.truncation)
        self.mapper.train()
        path = rundir.save_png(self.run_dir / rundir.SAMPLES / f"{name}.png", grid)
        self.hooks.sample(path)
        return path

    def run(self) -> MapperResult:
        from tqdm import tqdm

        cfg = self.cfg
        result = MapperResult(self.run_dir, self.step_count)
        self.ctrl_c.install()
        bar = tqdm(total=cfg.steps, initial=self.step_count, desc="nada mapper", unit="step",
                   disable=cfg.quiet, dynamic_ncols=True)
        log_every = max(1, cfg.steps // 10)
        t_start = time.perf_counter()
        try:
            while self.step_count < cfg.steps:
                record = self.step()
                self.metrics.append(record)
                result.history.append(record)
                self.hooks.step(record, cfg.steps)
                bar.update(1)
                bar.set_postfix({k.removeprefix("loss_"): f"{v:.4f}" for k, v in record.items()
                                 if k.startswith("loss")})
                s = self.step_count
                if cfg.quiet and (s % log_every == 0 or s == cfg.steps):
                    log.info("step %d/%d loss %.4f (%.2f s/step)", s, cfg.steps, record["loss"], record["time_s"])
                if cfg.sample_every and s % cfg.sample_every == 0 and s < cfg.steps:
                    self.sample_grid(f"step_{s:06d}")
                if cfg.save_every and s % cfg.save_every == 0 and s < cfg.steps:
                    self.save_mapper(self.run_dir / rundir.CHECKPOINTS / f"step_{s:06d}.safetensors")
                    self.save_resumable()
                if self.ctrl_c.requested or self.hooks.stopping:
                    self.save_resumable()
                    result.interrupted = True
                    log.warning("stopped at step %d; resume with: nada mapper train --resume %s", s, self.run_dir)
                    break
        finally:
            bar.close()
            self.ctrl_c.restore()
        result.seconds = time.perf_counter() - t_start
        result.steps = self.step_count
        if result.interrupted:
            return result
        self.save_resumable()
        self.mapper.eval()
        self.sample_grid("final")
        result.mapper_path = self.save_mapper(self.run_dir / MAPPER_FILE)
        if self.prep.eval_target is not None:
            from .evaluate import evaluate_mapper, format_mapper_table

            result.eval = evaluate_mapper(self.G, self.mapper, cfg.target, seeds=range(cfg.eval_seeds),
                                          strength=cfg.strength, truncation=cfg.truncation)
            rundir.write_json(self.run_dir / rundir.EVAL, result.eval)
            result.eval_table = format_mapper_table(result.eval)
        return result


def train_mapper(cfg: MapperConfig, hooks: RunHooks | None = None, prep=None) -> MapperResult:
    """Train a latent mapper as ``cfg`` says (Python API of ``nada mapper train``); ``hooks``
    watch the steps and can stop the run (it then resumes like an interrupted one). ``prep``:
    ``prepare_mapper(cfg)``'s result when the caller already checked the run with it."""
    from ..outputs import RunLock

    if prep is None:
        prep = prepare_mapper(cfg)
    with RunLock(prep.cfg.out):  # a second process on the same --out is refused, not interleaved
        run_dir = rundir.create_run_dir(prep.cfg)
        trainer = MapperTrainer(prep, run_dir, hooks)
        if prep.state is not None:
            trainer.load_state_dict(prep.state)
            log.info("resuming %s at step %d", run_dir, trainer.step_count)
        return trainer.run()

