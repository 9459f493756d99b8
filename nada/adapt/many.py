"""Many domains in one job (``nada train-many``): one run directory per domain, as ``nada train``
writes it, plus a summary of every domain under the job's folder.

Domain adapters (stylespace, modulation) whose options agree apart from the target, source,
iterations and lr train together: each step draws one batch of latents and noise, runs the
frozen twin and the blocks below the first learnable layer once, and encodes the frozen images
once per CLIP (text features once per target); then the trainable twin runs with each domain's
adapter, ``chunk`` domains per forward (K copies of the batch, domain k's adapter on the k-th).
With the default of one domain per forward every domain's own arithmetic is exactly the one of
``nada train`` for that domain, so a domain trains to the same numbers alone, beside others, or
on another rank of a ``torchrun`` job, bit for bit. More domains per forward measured no faster
on 2 CPU cores (K=8: 547-596 ms a step at 1 and 2, 833-1002 at 8) and can change float
rounding (oneDNN picks kernels by batch size), so it is an option for GPUs. ``full`` runs go
one after another in the process, sharing the loaded models.

Randomness: the latents and noise come from one generator seeded with ``seed`` (its draws per
step do not depend on K); what a single domain draws (the layer search, patch crops) comes from
the domain's own generator, seeded from ``seed`` and its target, so no domain's draws depend on
which others share its job, process or step."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, NadaError
from ..hooks import CtrlC, RunHooks
from ..outputs import RunLock
from . import rundir
from .config import TrainConfig, generator_adam
from .trainer import RunResult, Trainer, prepare

log = logging.getLogger(__name__)

MANY = "many.json"          # the job: its domains and their configs (for --resume)
SUMMARY = "summary.json"    # every domain's outcome and figures
# Adapter domains per forward of the trainable twin (scripts/bench_many.py --chunks): 1 keeps
# every domain's arithmetic that of a run of its own (bit for bit) and measured as fast as 2.
CHUNK = 1
# Options that may differ between domains that train in one batched step.
PER_DOMAIN = {"target", "source", "style_images", "iters", "lr", "lr_final", "out", "origin", "resume", "overwrite"}


@dataclass
class DomainOutcome:
    """One domain's line in the summary."""

    name: str
    target: str
    run_dir: str
    status: str = "pending"            # done | failed | interrupted | pending
    iterations: int = 0
    seconds: float = 0.0               # training loop time of its group (shared with the group's other domains)
    images_per_s: float | None = None  # adapted images per second of loop time, this domain's
    group: int | None = None           # domains with the same number trained in one batched step
    error: str | None = None
    product: str | None = None         # domain.safetensors or generator.safetensors
    eval: dict[str, Any] | None = None


@dataclass
class ManyResult:
    out: Path
    outcomes: list[DomainOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.status == "done" for o in self.outcomes)


def domain_names(targets: Sequence[str]) -> list[str]:
    """A folder name per target (lower case, ``-`` for anything not a letter or digit), made
    unique with ``-2``, ``-3`` … in order."""
    names, seen = [], {}
    for t in targets:
        base = "".join(c if c.isalnum() else "-" for c in t.strip().lower()).strip("-") or "domain"
        while "--" in base:
            base = base.replace("--", "-")
        n = seen.get(base, 0) + 1
        seen[base] = n
        names.append(base if n == 1 else f"{base}-{n}")
    return names


def domain_seed(seed: int, target: str) -> int:
    """The seed of a domain's own draws: a function of the job's seed and the target alone."""
    return (seed * 1_000_003 + zlib.crc32(target.encode())) % (2 ** 63)


def batch_key(cfg: TrainConfig) -> str:
    """Domains whose configs agree on this train in one batched step."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in PER_DOMAIN}
    return json.dumps(d, sort_keys=True)


# --- the job folder -------------------------------------------------------------------------

def check_job_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber: an existing non-empty ``out`` needs ``overwrite`` (and a ``many.json``,
    so that a typo cannot wipe an unrelated folder) or ``resume``."""
    from ..outputs import check_writable

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", "choose another --out")
    nonempty = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / MANY).is_file():
            raise ConfigError(f"{out} holds no train-many job ({MANY})", "start a new job without --resume")
    elif nonempty:
        if not overwrite:
            raise ConfigError(f"--out {out} already exists",
                              "pass --resume to continue its unfinished domains, --overwrite to start again, or another --out")
        if not (out / MANY).is_file():
            raise ConfigError(f"{out} is not empty and is not a train-many folder (no {MANY})",
                              "refusing to delete it; choose another --out")
    check_writable(out, "--out folder")


def write_job(out: Path, names: Sequence[str], cfgs: Sequence[TrainConfig], overwrite: bool) -> None:
    import shutil

    if overwrite and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_json(out / MANY, {"kind": "train-many",
                                   "domains": [{"name": n, "config": c.to_dict()} for n, c in zip(names, cfgs)]})


def read_job(out: Path) -> tuple[list[str], list[TrainConfig]]:
    """The domains of a job folder (``--resume``), with their run directories under ``out`` as it is now."""
    try:
        d = json.loads((out / MANY).read_text())
        entries = d["domains"]
        names = [str(e["name"]) for e in entries]
        cfgs = [TrainConfig.from_dict(e["config"]) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, NadaError) as exc:
        raise ConfigError(f"{out / MANY}: unreadable ({exc})", "start a new job with --overwrite") from exc
    return names, [c.replace(out=str(out / n), overwrite=False, resume=False) for n, c in zip(names, cfgs)]


def domain_state(cfg: TrainConfig) -> str:
    """``done`` (its product is written), ``resumable`` (a checkpoint), or ``new``."""
    from ..hub import run_product

    out = Path(cfg.out)
    if out.is_dir() and run_product(out) is not None:
        return "done"
    if (out / rundir.CHECKPOINTS / rundir.RESUME).is_file():
        return "resumable"
    return "new"


def format_summary(outcomes: Sequence[DomainOutcome]) -> str:
    rows = [("domain", "status", "iters", "seconds", "img/s", "attain", "shape", "centre px", "diversity", "file")]
    for o in outcomes:
        e = o.eval or {}

        def f(key, fmt="{:.3f}"):
            v = e.get(key)
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        rows.append((o.name, o.status, str(o.iterations), f"{o.seconds:.1f}",
                     "-" if o.images_per_s is None else f"{o.images_per_s:.1f}", f("target_attainment"),
                     f("shape_preserved"), f("centre_shift_px"), f("diversity"),
                     Path(o.product).name if o.product else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"{o.name}: {o.error}" for o in outcomes if o.error]
    return "\n".join(lines)


# --- one batched group ----------------------------------------------------------------------

class StackedAdapters:
    """The adapters of K domains applied to a batch laid out as K blocks of B samples: block k
    gets domain k's offsets (or multipliers). Hooks on the layers' affines, as one adapter's."""

    def __init__(self, trainers: Sequence[Trainer]):
        self.trainers = list(trainers)
        self.active: list[Trainer] = list(trainers)
        self._handles: list = []

    def attach(self, synthesis) -> None:
        from .adapters import styled_layers

        self.detach()
        layers = styled_layers(synthesis)
        for name in self.trainers[0].adapter.names:
            self._handles.append(layers[name].affine.register_forward_hook(self._hook(name)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, name: str):
        def hook(module, inputs, styles):
            k = len(self.active)
            p = torch.stack([t.adapter.parameter(name) for t in self.active]).to(styles.dtype)[:, None]
            s = styles.reshape(k, styles.shape[0] // k, styles.shape[1])
            s = s * p.exp() if self.trainers[0].adapter.kind == "modulation" else s + p
            return s.reshape(styles.shape)
        return hook


class GroupTrainer:
    """K adapter domains with the same options trained in lockstep, each through its own
    :class:`Trainer` (run directory, adapter, optimiser, metrics, checkpoints, evaluation)."""

    def __init__(self, trainers: Sequence[Trainer], outcomes: Sequence[DomainOutcome], shared_rng_state=None,
                 hooks: RunHooks | None = None, chunk: int | None = None):
        self.hooks = hooks or RunHooks()  # each domain's step records; hooks.stop ends the job as Ctrl-C does
        self.trainers = list(trainers)
        self.outcomes = {id(t): o for t, o in zip(trainers, outcomes)}
        first = self.trainers[0]
        self.cfg = first.cfg
        self.twin = first.twin
        self.rng = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        if shared_rng_state is not None:
            self.rng.set_state(shared_rng_state)
        self.stack = StackedAdapters(self.trainers)
        self.chunk = max(1, chunk or CHUNK)
        self.ctrl_c = CtrlC("interrupt: finishing this step and saving every domain's resumable checkpoint")

    @contextlib.contextmanager
    def _as_single(self, t: Trainer):
        """The trainable twin with only ``t``'s adapter (its layer search, grids, evaluation)."""
        self.stack.detach()
        t.adapter.attach(self.twin.trainable)
        try:
            yield
        finally:
            t.adapter.detach()
            self.stack.attach(self.twin.trainable)

    def save(self, t: Trainer) -> None:
        rundir.save_state(t.run_dir, {**t.state_dict(), "shared_rng": self.rng.get_state()})

    def step(self, active: list[Trainer]) -> list[tuple[Trainer, dict[str, Any] | Exception]]:
        cfg = self.cfg
        t0 = time.perf_counter()
        search = {}
        for t in active:
            if cfg.auto_layer_iters > 0:
                with self._as_single(t):
                    search[id(t)] = t.choose_layers()
            else:
                search[id(t)] = t.choose_layers()
            t.adapter.set_learnable(search[id(t)][0].names)
        ws = self.twin.sample_ws(cfg.batch, self.rng, cfg.mixing, cfg.truncation)
        noise = self.twin.make_noise(cfg.batch, self.rng) if cfg.noise_mode == "random" else None
        k, b = len(active), ws.shape[0]
        shared = active[0].shared_res
        with torch.no_grad():
            state = self.twin.frozen.forward_to(ws, shared, noise=noise) if shared is not None else None
            frozen_img = self.twin.frozen(ws, noise=noise, start=state)
        obj0, weights = active[0].objective, active[0].weights
        frozen_feats = None
        if obj0.needs_features(weights):
            with torch.no_grad():
                frozen_feats = [None if w == 0 else enc.encode_image(frozen_img).float()
                                for enc, w in zip(obj0.encoders, obj0.weights)]
        for t in active:
            t.opt.zero_grad(set_to_none=True)
        out = []
        # The trainable twin runs on `chunk` domains at a time (see the module docstring).
        for c0 in range(0, k, self.chunk):
            part = active[c0: c0 + self.chunk]
            kc = len(part)
            st = None
            if state is not None:
                from ..networks.generator import SynthesisState

                st = SynthesisState(shared, state.x.repeat(kc, 1, 1, 1), state.img.repeat(kc, 1, 1, 1))
            noise_k = None if noise is None else {n: v.repeat(kc, 1, 1, 1) for n, v in noise.items()}
            self.stack.active = part
            train_img = self.twin.trainable(ws.repeat(kc, 1, 1), noise=noise_k, start=st)
            train_feats = None
            if frozen_feats is not None:
                train_feats = [None if f0 is None else enc.encode_image(train_img).float()
                               for enc, f0 in zip(obj0.encoders, frozen_feats)]
            total = None
            for i, t in enumerate(part):
                rows = slice(i * b, (i + 1) * b)
                if train_feats is None:
                    mine = [None] * len(obj0.encoders)
                else:
                    mine = [None if f0 is None else (f0, f1[rows]) for f0, f1 in zip(frozen_feats, train_feats)]
                terms = t.objective.losses_from_features(mine, frozen_img, train_img[rows], weights, rng=t.rng)
                loss = sum(weights[name] * value for name, value in terms.items())
                value = float(loss.detach())
                if not torch.isfinite(loss.detach()):
                    out.append((t, FloatingPointError(f"loss became {value} at iteration {t.iteration + 1}")))
                    continue
                out.append((t, {"loss": value, **{f"loss_{n}": float(v.detach()) for n, v in terms.items()}}))
                total = loss if total is None else total + loss
            if total is not None:
                total.backward()
        elapsed = time.perf_counter() - t0
        records = []
        for t, rec in out:
            t.adapter.set_learnable([])
            if isinstance(rec, Exception):
                records.append((t, rec))
                continue
            base_lr = t.cfg.lr_at(t.iteration)
            for g in t.opt.param_groups:
                g["lr"] = generator_adam(base_lr)[0]
            t.opt.step()
            t.iteration += 1
            sel, search_s = search[id(t)]
            records.append((t, {"iter": t.iteration, **rec, "lr": base_lr, "layers": list(sel.names),
                                "w_indices": list(sel.w_indices), "time_s": round(elapsed, 5),
                                "search_s": round(search_s, 5), "domains": k}))
        return records

    def run(self, quiet: bool) -> None:
        from tqdm import tqdm

        self.ctrl_c.install()
        start = min(t.iteration for t in self.trainers)
        total = max(t.cfg.iters for t in self.trainers)
        bar = tqdm(total=total, initial=start, desc=f"nada train-many ({len(self.trainers)} domains)", unit="it",
                   disable=quiet, dynamic_ncols=True)
        self.stack.attach(self.twin.trainable)
        loop_s = 0.0
        steps = {id(t): 0 for t in self.trainers}
        try:
            active = [t for t in self.trainers if t.iteration < t.cfg.iters]
            while active and not (self.ctrl_c.requested or self.hooks.stopping):
                t0 = time.perf_counter()
                active[0].governor.tick()
                losses = []
                for t, rec in self.step(active):
                    o = self.outcomes[id(t)]
                    if isinstance(rec, Exception):
                        o.status, o.error = "failed", str(rec)
                        log.error("%s failed: %s", o.name, rec)
                        continue
                    t.metrics.append(rec)
                    losses.append(rec["loss"])
                    self.hooks.step({**rec, "domain": o.name}, t.cfg.iters)
                    steps[id(t)] += 1
                    it = t.iteration
                    if t.cfg.sample_every and it % t.cfg.sample_every == 0 and it < t.cfg.iters:
                        with self._as_single(t):
                            t.sample_grid(f"iter_{it:06d}")
                    if t.cfg.save_every and it % t.cfg.save_every == 0 and it < t.cfg.iters:
                        t.save_domain(t.run_dir / rundir.CHECKPOINTS / t.output_name(f"iter_{it:06d}"))
                        self.save(t)
                loop_s += time.perf_counter() - t0
                active = [t for t in active if self.outcomes[id(t)].status != "failed"]
                bar.update(1)
                if losses:
                    bar.set_postfix(domains=len(active), mean_loss=f"{sum(losses) / len(losses):.4f}")
                for t in [t for t in active if t.iteration >= t.cfg.iters]:
                    self._finish(t, loop_s, steps[id(t)])
                active = [t for t in active if t.iteration < t.cfg.iters]
            for t in active:  # interrupted
                self.save(t)
                o = self.outcomes[id(t)]
                o.status, o.iterations, o.seconds = "interrupted", t.iteration, round(loop_s, 3)
        finally:
            bar.close()
            self.stack.detach()
            self.ctrl_c.restore()

    def _finish(self, t: Trainer, loop_s: float, steps: int) -> None:
        o = self.outcomes[id(t)]
        result = RunResult(t.run_dir, t.iteration, seconds=loop_s)
        with self._as_single(t):
            t.finish(result)
        self.save(t)
        o.status, o.iterations, o.seconds = "done", t.iteration, round(loop_s, 3)
        o.images_per_s = round(steps * t.cfg.batch / loop_s, 3) if loop_s > 0 else None
        o.product = str(result.generator_path)
        o.eval = result.eval


# --- the job --------------------------------------------------------------------------------

def train_many(cfgs: Sequence[TrainConfig], out: str | Path, names: Sequence[str] | None = None,
               resume: bool = False, overwrite: bool = False, quiet: bool = False,
               shard: tuple[int, int] = (0, 1), hooks: RunHooks | None = None,
               chunk: int | None = None) -> ManyResult:
    """Train every domain of ``cfgs`` (their ``out`` is replaced by ``out/<name>``); with
    ``resume``, the domains of the job in ``out`` (``cfgs`` ignored) continue where they stopped.
    ``shard`` = (rank, world): this process trains domains ``rank, rank + world, …`` (torchrun);
    the job folder must already hold ``many.json`` then (:func:`nada.adapt.distributed.train_many_distributed`).
    A domain that fails is reported in its outcome; the others go on. ``hooks`` get every
    domain's step records (with ``domain``, its name); ``hooks.stop`` stops the job resumably.
    ``chunk``: adapter domains per forward of the trainable twin (default :data:`CHUNK`)."""
    out = Path(out)
    rank, world = shard
    if world == 1:
        check_job_dir(out, resume, overwrite)
    if resume:
        names, cfgs = read_job(out)
    else:
        if not cfgs:
            raise ConfigError("no targets", "pass --targets a,b,c or --targets-file FILE")
        names = list(names) if names is not None else domain_names([c.target or Path(c.style_images).name for c in cfgs])
        cfgs = [c.replace(out=str(out / n), overwrite=False, resume=False) for n, c in zip(names, cfgs)]
        if world == 1:
            write_job(out, names, cfgs, overwrite)
    result = ManyResult(out)
    outcomes = [DomainOutcome(n, c.target or str(c.style_images), c.out) for n, c in zip(names, cfgs)]
    result.outcomes = outcomes
    mine = [i for i in range(len(cfgs)) if i % world == rank]
    t_start = time.perf_counter()
    with contextlib.ExitStack() as locks:  # a second job on the same domains is refused, not interleaved
        for i in mine:
            if cfgs[i].adapter != "full":  # full domains run through `train`, which locks its run itself
                locks.enter_context(RunLock(cfgs[i].out))
        _train_shard(cfgs, outcomes, mine, quiet, hooks, chunk or CHUNK)
    result.seconds = time.perf_counter() - t_start
    if world == 1:
        write_summary(out, outcomes)
    return result


def _train_shard(cfgs, outcomes, mine, quiet, hooks, chunk) -> None:
    generators: dict[str, Any] = {}
    groups: dict[tuple, list[tuple[int, Trainer]]] = {}

    def stopped() -> bool:  # Ctrl-C or hooks.stop ends the job, not just one domain
        return any(o.status == "interrupted" for o in outcomes) or (hooks is not None and hooks.stopping)
    for i in mine:
        cfg, o = cfgs[i], outcomes[i]
        state = domain_state(cfg)
        if state == "done":
            o.status, o.product = "done", str(_product(cfg))
            o.eval = _read_eval(cfg)
            o.iterations = cfg.iters
            continue
        cfg = cfg.replace(resume=state == "resumable", overwrite=state == "new", quiet=quiet)
        if cfg.adapter == "full":
            if not stopped():
                _train_one(cfg, o, generators, hooks)
            continue
        try:
            prep = prepare(cfg, generators=generators)
            run_dir = rundir.create_run_dir(prep.cfg)
            t = Trainer(prep, run_dir)
            t.adapter.detach()  # the group applies every domain's adapter at once
            t.rng.manual_seed(domain_seed(cfg.seed, cfg.target or str(cfg.style_images)))
            shared_state = None
            if prep.state is not None:
                t.load_state_dict(prep.state)
                shared_state = prep.state.get("shared_rng")
        except NadaError as exc:
            o.status, o.error = "failed", str(exc)
            log.error("%s failed: %s", o.name, exc)
            continue
        key = (batch_key(cfg), t.iteration, None if shared_state is None else bytes(shared_state.numpy()))
        groups.setdefault(key, []).append((i, t, shared_state))
    for g, members in enumerate(groups.values()):
        trainers = [t for _, t, _ in members]
        for i, _, _ in members:
            outcomes[i].group = g
        # the group's twin is the first domain's; the others' identical copies are let go
        for t in trainers[1:]:
            t.twin = t.prep.twin = trainers[0].twin
            t.layers = trainers[0].layers
        if stopped():
            break
        GroupTrainer(trainers, [outcomes[i] for i, _, _ in members], members[0][2], hooks, chunk).run(quiet)


def _product(cfg: TrainConfig):
    from ..hub import run_product

    return run_product(cfg.out)


def _read_eval(cfg: TrainConfig) -> dict[str, Any] | None:
    p = Path(cfg.out) / rundir.EVAL
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, ValueError):
        return None


def _train_one(cfg: TrainConfig, o: DomainOutcome, generators: dict[str, Any], hooks: RunHooks | None) -> None:
    """A full fine-tuning domain: ``nada train`` in this process, sharing the loaded models."""
    from .trainer import train

    try:
        res = train(cfg, hooks=hooks, generators=generators)
    except (NadaError, FloatingPointError) as exc:
        o.status, o.error = "failed", str(exc)
        log.error("%s failed: %s", o.name, exc)
        return
    o.iterations, o.seconds = res.iterations, round(res.seconds, 3)
    done = len(res.history)  # this call's iterations (a resumed domain had some already)
    o.images_per_s = round(done * cfg.batch / res.seconds, 3) if res.seconds > 0 and done else None
    if res.interrupted:
        o.status = "interrupted"
        return
    o.status, o.product, o.eval = "done", str(res.generator_path), res.eval


def write_summary(out: Path, outcomes: Sequence[DomainOutcome]) -> Path:
    path = out / SUMMARY
    rundir.write_json(path, {"domains": [asdict(o) for o in outcomes]})
    return path
