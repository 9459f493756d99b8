"""The Mapper tab's logic without Gradio: a typed form → a checked ``MapperConfig`` → a queued
job (``nada.mapper.train_mapper``), and applying a finished mapper to seeds at any strength.
Generators are the embedded shapes world or a finished run of the runs folder, by name."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..hub import run_product
from .context import MAPPER, AppContext
from .jobs import Job

SHAPES_CHOICE = "shapes"      # the generator dropdown's entry for the embedded shapes world
OWN = ""                      # the apply dropdown's entry for "the generator the mapper was trained on"
_MAX_SEEDS = 16


@dataclass
class MapperForm:
    """What a visitor filled in; zero values mean nada's defaults."""

    generator: str = SHAPES_CHOICE          # 'shapes' or the name of a finished `nada train` run
    target: str = ""                        # the edit, e.g. blue, star
    steps: int = 0                          # 0 = MapperConfig's default
    preview_every: int = 50
    lr: float = 0.0
    batch: int = 0
    levels: list[str] = field(default_factory=lambda: ["coarse", "medium", "fine"])
    lambda_clip: float = 1.0
    lambda_latent: float = 0.8
    lambda_norm: float | None = None        # None = MapperConfig's default
    init: str = ""                          # a finished mapper run to fine-tune from; "" = none
    seed: int = 0


def generator_spec(ctx: AppContext, choice: str) -> str:
    """'shapes' or the run directory of a finished `nada train` run (hub.resolve_generator takes it)."""
    if not choice or choice == SHAPES_CHOICE:
        return "shapes"
    run = ctx.run_dir(choice)
    if run_product(run) is None:
        raise ConfigError(f"run {choice!r} has no adapted generator yet", "wait until it finishes")
    return str(run)


def mapper_file(ctx: AppContext, name: str):
    run = ctx.run_dir(name)
    path = run / "mapper.safetensors"
    if not path.is_file():
        raise ConfigError(f"no finished mapper run named {name!r}", "pick one from the list (Refresh updates it)")
    return path


def build_mapper_config(ctx: AppContext, form: MapperForm, run_name: str):
    """Check the form: ``(MapperConfig, prepared run)`` of a new run called ``run_name``, or a
    NadaError (one line) for the first problem, before anything is written."""
    from ..adapt.rundir import check_run_dir
    from ..mapper import MapperConfig
    from ..mapper.trainer import prepare_mapper

    target = (form.target or "").strip()
    if not target:
        raise ConfigError("the edit text is empty", "type the edit to learn, e.g. blue or star")
    kw = dict(out=str(ctx.runs_dir / run_name), generator=generator_spec(ctx, form.generator), target=target,
              levels=tuple(form.levels or ()), lambda_clip=float(form.lambda_clip),
              lambda_latent=float(form.lambda_latent), sample_every=int(form.preview_every), seed=int(form.seed),
              init=str(mapper_file(ctx, form.init)) if form.init else None, device=ctx.device, quiet=True)
    optional = {"steps": int(form.steps) or None, "lr": float(form.lr) or None, "batch": int(form.batch) or None,
                "lambda_norm": None if form.lambda_norm is None else float(form.lambda_norm)}
    cfg = MapperConfig(**kw, **{k: v for k, v in optional.items() if v is not None})
    check_run_dir(cfg)
    return cfg, prepare_mapper(cfg)  # loads and checks everything (generator, CLIPs, words, init), writes nothing


def submit_mapper(ctx: AppContext, form: MapperForm, owner: str | None = None) -> tuple[Job, str]:
    """Check the form, then queue the mapper's training; (job, run name)."""
    from ..mapper import train_mapper

    name = ctx.new_run_name(f"mapper-{form.target}")
    cfg, prep = build_mapper_config(ctx, form, name)  # the job trains what was checked, not a second load
    return ctx.jobs.submit(functools.partial(train_mapper, cfg, prep=prep), name=f"mapper: {cfg.target}",
                           owner=owner, tag=name), name


def apply_view(ctx: AppContext, mapper_name: str, generator_choice: str, seeds: str, strength: float,
               truncation: float = 0.7) -> tuple[np.ndarray, str, int]:
    """(grid: unedited row above edited row, caption, tile side) for a finished mapper run."""
    from ..mapper import edit_grid, mapper_and_generator
    from ..networks.sampling import parse_seeds

    if not mapper_name:
        raise ConfigError("no mapper chosen", "train one above, or pick one from the list")
    seed_list = parse_seeds(seeds)
    if len(seed_list) > _MAX_SEEDS:
        raise ConfigError(f"{len(seed_list)} seeds; the page shows at most {_MAX_SEEDS}", "use e.g. 0-7")
    if not -1.0 <= float(strength) <= 1.0:
        raise ConfigError(f"strength {strength!r} outside [-1, 1]")
    spec = None if generator_choice == OWN else generator_spec(ctx, generator_choice)
    G, loaded, note = mapper_and_generator(str(mapper_file(ctx, mapper_name)), spec, ctx.device)
    grid = edit_grid(G, loaded.mapper, seed_list, float(strength), float(truncation))
    caption = (f"Top: unedited; bottom: edited toward **{loaded.metadata.get('target')}** at strength "
               f"{float(strength):.2f} (trained at {loaded.strength:g}).")
    if note:
        caption += f" Note: {note}."
    return grid, caption, int(G.img_resolution)


def mapper_runs(ctx: AppContext):
    return ctx.list_runs(finished_only=True, kind=MAPPER)


def result_markdown(snap) -> str:
    from ..mapper import format_mapper_table

    result = snap.result
    lines = [f"**Mapper run `{snap.tag}`**: {getattr(result, 'steps', snap.step)} steps in "
             f"{getattr(result, 'seconds', snap.elapsed):.1f} s of training."]
    if getattr(result, "eval", None):
        lines += ["", "Shapes oracle, edited vs unedited images of 256 fixed latents:", "", "```",
                  format_mapper_table(result.eval), "```"]
    return "\n".join(lines)
