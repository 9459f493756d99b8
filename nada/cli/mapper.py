"""``nada mapper train | apply``: learn a text-driven edit in W+ (a latent mapper), apply it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_FORMATTER = argparse.RawDescriptionHelpFormatter


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="latent mappers: text-driven edits inside a domain (train, apply)",
                       description="A latent mapper (StyleCLIP's levels mapper) learns one edit, e.g. 'blue' or "
                       "'a star', in W+ of a generator: w' = w + strength·M(w). Train it on the source or an "
                       "adapted generator, or fine-tune one with --init; the file holds the mapper only.")
    msub = p.add_subparsers(dest="mapper_command", metavar="ACTION")
    _register_train(msub)
    _register_apply(msub)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def _register_train(msub) -> None:
    from ..mapper.config import MapperConfig, OPTIMIZERS

    d = MapperConfig.__dataclass_fields__
    p = msub.add_parser("train", help="train a mapper for a target text", formatter_class=_FORMATTER,
                        description="Train a levels mapper toward --target with CLIP (global loss), latent L2 and "
                        "CLIP embedding-norm losses. Writes a run directory: config.json, metrics.jsonl, samples/ "
                        "(unedited row above edited row), checkpoints/, mapper.safetensors and, on the shapes "
                        "world, eval.json. Ctrl-C leaves a resumable run (--resume).")
    a = p.add_argument
    a("--generator", default="shapes",
      help="generator to edit: checkpoint, known name, a `nada train` run directory, or 'shapes' (default)")
    a("--target", default=None, help="text of the edit, e.g. blue, star, 'with glasses' (required)")
    a("--source", default=None, help="text of the unedited images; only --lambda-direction uses it")
    a("--clip", action="append", default=None, metavar="SPEC",
      help="CLIP model spec, repeatable (default: the generator's own `nada train` CLIPs, else shapes + "
           "shapes-fine on the shapes world, else ViT-B-32:openai + ViT-B-16:openai)")
    a("--clip-weights", type=float, nargs="+", default=None, metavar="W", help="one weight per --clip (default 1)")
    a("--steps", type=int, default=None, help=f"optimiser steps (default: {d['steps'].default}; with --resume: the run's)")
    a("--batch", type=int, default=d["batch"].default, help=f"latents per step (default {d['batch'].default})")
    a("--lr", type=float, default=d["lr"].default, help=f"learning rate (default {d['lr'].default}, StyleCLIP)")
    a("--lr-final", type=float, default=d["lr_final"].default, metavar="FRACTION",
      help=f"cosine-anneal the lr to this fraction of --lr by the last step (default {d['lr_final'].default})")
    a("--optimizer", choices=OPTIMIZERS, default="adam",
      help="adam (default) or ranger (StyleCLIP's; needs pip install pytorch_optimizer)")
    a("--strength", type=float, default=d["strength"].default,
      help=f"edit strength during training (default {d['strength'].default}, StyleCLIP)")
    a("--levels", default="coarse,medium,fine",
      help="W+ levels that edit: any of coarse (rows 0-3), medium (4-7), fine (8+) (default: all)")
    a("--init", default=None, metavar="MAPPER", help="start from this mapper (fine-tune it on --generator)")
    a("--latents", default=None, metavar="FILE",
      help="safetensors file of W+ latents [N, num_ws, w_dim] to train on (default: sample --num-latents)")
    a("--num-latents", type=int, default=d["num_latents"].default,
      help=f"latents sampled from z at --truncation (default {d['num_latents'].default})")
    a("--truncation", type=float, default=d["truncation"].default,
      help=f"truncation psi of sampled latents (default {d['truncation'].default}, StyleCLIP)")
    a("--lambda-clip", type=float, default=d["lambda_clip"].default, help="global CLIP loss weight (default 1)")
    a("--lambda-latent", type=float, default=d["lambda_latent"].default, help="latent L2 weight (default 0.8)")
    a("--lambda-norm", type=float, default=d["lambda_norm"].default,
      help=f"CLIP embedding-norm loss weight (default {d['lambda_norm'].default}; StyleGAN-NADA's 0.5 slows "
           "edits down on the shapes world, see docs/mapper.md)")
    a("--lambda-direction", type=float, default=0.0, help="directional CLIP loss weight, needs --source (default 0)")
    a("--identity", default=None, metavar="FILE|NAME",
      help="ArcFace IR-SE50 weights (faces) for the identity loss, e.g. arcface-ir-se50 (default: off)")
    a("--lambda-id", type=float, default=d["lambda_id"].default, help="identity loss weight (default 0.1)")
    a("--out", default="runs/mapper", help="run directory (default runs/mapper)")
    a("--overwrite", action="store_true", help="replace an existing run directory")
    a("--resume", default=None, metavar="RUN_DIR", help="continue a mapper run where it stopped")
    a("--sample-every", type=int, default=d["sample_every"].default, help="sample grid every N steps")
    a("--sample-seeds", default="0-7", help="seeds of the sample grids (default 0-7)")
    a("--save-every", type=int, default=d["save_every"].default, help="resumable checkpoint every N steps")
    a("--no-eval", action="store_true", help="skip the shapes-world evaluation at the end")
    a("--eval-seeds", type=int, default=256, help="seeds of the final evaluation (default 256)")
    a("--seed", type=int, default=0, help="seed of the sampled latents and their order (default 0)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    a("--quiet", action="store_true", help="no progress bar, log lines only")
    p.set_defaults(func=run_train)


def _register_apply(msub) -> None:
    p = msub.add_parser("apply", help="apply a mapper to seeds: unedited row above edited row",
                        description="Edit the latents of seeds with a mapper (w + strength·M(w)) and write a grid "
                        "(unedited row, edited row) or individual PNGs. The generator defaults to the one the mapper "
                        "was trained on; another generator of the same shape (an adapted twin) is allowed.")
    a = p.add_argument
    a("--mapper", required=True, help="mapper.safetensors, or a `nada mapper train` run directory")
    a("--generator", default=None, help="generator to edit (default: the mapper's own)")
    a("--seeds", default="0-7", help="seeds, e.g. 0-7 or 1,5,9 (default 0-7)")
    a("--strength", type=float, default=None, help="edit strength (default: the mapper's, usually 0.1)")
    a("--truncation", type=float, default=0.7, help="truncation psi of the seeds' latents (default 0.7)")
    a("--out", default="mapper_grid.png", help="grid PNG, or a folder with --individual")
    a("--individual", action="store_true", help="write seedNNNN.png (unedited) and seedNNNN_edit.png into --out")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=run_apply)


def config_from_args(args: argparse.Namespace):
    """argparse namespace → MapperConfig (the only place that knows both)."""
    from ..errors import ConfigError
    from ..mapper import MapperConfig, load_mapper_config

    if args.resume:
        saved = load_mapper_config(args.resume)
        return saved.replace(out=args.resume, resume=True, overwrite=False, quiet=args.quiet, device=args.device,
                             steps=args.steps if args.steps is not None else saved.steps)
    if args.target is None:
        raise ConfigError("--target is required", "describe the edit, e.g. --target blue")
    kw = dict(out=args.out, overwrite=args.overwrite, generator=args.generator, clip=tuple(args.clip or ()),
              clip_weights=tuple(args.clip_weights or ()), init=args.init, identity=args.identity,
              target=args.target, source=args.source, levels=tuple(args.levels.split(",")),
              strength=args.strength, latents=args.latents, num_latents=args.num_latents,
              truncation=args.truncation, batch=args.batch, optimizer=args.optimizer, lr=args.lr,
              lr_final=args.lr_final, seed=args.seed,
              lambda_clip=args.lambda_clip, lambda_latent=args.lambda_latent, lambda_norm=args.lambda_norm,
              lambda_direction=args.lambda_direction, lambda_id=args.lambda_id, sample_every=args.sample_every,
              sample_seeds=args.sample_seeds, save_every=args.save_every, evaluate=not args.no_eval,
              eval_seeds=args.eval_seeds, device=args.device, quiet=args.quiet)
    if args.steps is not None:
        kw["steps"] = args.steps
    return MapperConfig(**kw)


def run_train(args: argparse.Namespace) -> int:
    from ..mapper import train_mapper

    result = train_mapper(config_from_args(args))
    if result.interrupted:
        print(f"interrupted at step {result.steps}; resume with: nada mapper train --resume {result.run_dir}")
        return 130
    per = result.seconds / max(1, len(result.history))
    print(f"trained {result.steps} steps in {result.seconds:.1f} s ({per:.3f} s/step); run directory {result.run_dir}")
    print(f"mapper: {result.mapper_path} ({result.mapper_path.stat().st_size / 2**20:.2f} MiB)")
    if result.eval_table:
        print(result.eval_table)
    return 0


def run_apply(args: argparse.Namespace) -> int:
    import numpy as np

    from ..adapt.rundir import save_png as save  # atomic PNG write
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..mapper import edit_images, mapper_and_generator
    from ..networks.sampling import image_grid, parse_seeds

    seeds = parse_seeds(args.seeds)
    if not 0 <= args.truncation <= 1:
        raise ConfigError(f"--truncation {args.truncation} must be in [0, 1]")
    out = Path(args.out)
    from ..outputs import check_writable

    check_writable(out)  # before the mapper and generator load
    if args.individual and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", "with --individual, --out names a folder")
    if not args.individual and out.is_dir():
        raise ConfigError(f"--out {out} is a folder", "give a .png path, or add --individual")
    device = resolve_device(args.device)
    G, loaded, note = mapper_and_generator(args.mapper, args.generator, device)
    if note:
        print(f"note: {note}")
    strength = loaded.strength if args.strength is None else args.strength
    before, after = edit_images(G, loaded.mapper, seeds, strength, args.truncation)

    if args.individual:
        out.mkdir(parents=True, exist_ok=True)
        for s, a, b in zip(seeds, before, after):
            save(out / f"seed{s:04d}.png", a)
            save(out / f"seed{s:04d}_edit.png", b)
        print(f"wrote {2 * len(seeds)} images to {out}/ (strength {strength:g})")
    else:
        save(out, image_grid(np.concatenate([before, after]), cols=len(seeds), pad=2))
        print(f"wrote {out}: unedited row above edited row, {len(seeds)} seeds, strength {strength:g}, "
              f"target {loaded.metadata.get('target')!r}")
    return 0
