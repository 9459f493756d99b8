"""``nada train``: adapt a generator to a text (or style-image) target; see ``nada.adapt``."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

_FORMATTER = argparse.RawDescriptionHelpFormatter


def _k(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def register(sub, name: str) -> None:

    p = sub.add_parser(
        name,
        help="adapt a generator to a text or style-image target (StyleGAN-NADA)",
        formatter_class=_FORMATTER,
        description=(
            "Adapt a StyleGAN2 generator with CLIP guidance. With no --generator and no --clip it adapts "
            "the embedded shapes world (offline) and ends with the `nada eval` table.\n"
            "Defaults marked 'official' follow the StyleGAN-NADA code (ZSSGAN train options / notebook); "
            "'shapes' marks values measured best on the shapes world; a --preset replaces defaults, "
            "explicit options win over the preset."
        ),
    )
    add_train_options(p)
    p.set_defaults(func=run, parser=p)


def add_train_options(p: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> None:
    """Every option of ``nada train`` (``train-many`` shares them, less those in ``skip``)."""
    from ..adapt.config import PRESETS

    def a(*flags, **kw):
        if flags[0].lstrip("-").replace("-", "_") not in skip:
            p.add_argument(*flags, **kw)

    a("--source", default="photo", help="source-domain text (default: photo, as the official examples)")
    a("--target", default=None, help="target-domain text, e.g. sketch (this or --style-images is required)")
    a("--style-images", default=None, metavar="DIR", help="folder of target-style images instead of --target")
    a("--generator", default="shapes",
      help="frozen source generator: .pt/.pkl/.safetensors path, known name, URL or 'shapes' (default: shapes)")
    a("--train-generator", default=None, metavar="PATH",
      help="initial weights of the trainable twin (default: a copy of --generator, as the official code)")
    a("--clip", action="append", default=None, metavar="SPEC",
      help="CLIP model spec, repeatable: open_clip NAME:TAG or NAME:/path/to/weights, 'shapes' or "
           "shapes-fine (embedded, 16 and 8 px patches) or shapes:DIR (default: shapes and shapes-fine for the shapes "
           "world, shapes; ViT-B-32:openai and ViT-B-16:openai for any other generator, official)")
    a("--clip-weights", type=float, nargs="+", default=None, metavar="W",
      help="one weight per --clip (default: all 1, official)")
    a("--preset", default="default", choices=list(PRESETS),
      help="named option set: default (shapes-tuned), paper (official train.py: k=1), notebook (no layer "
           "search, all conv layers), improve-shape (notebook: k=int(2·num_ws/3), mixing 0.9)")
    a("--iters", type=int, default=None, help="training iterations (default: 300; with --resume: the run's)")
    a("--batch", type=int, default=None,
      help="latents per iteration (default: 2, official; 16 with the shapes-world layer default, shapes)")
    a("--lr", type=float, default=None,
      help="base learning rate (default: 0.002, official; 0.03 with the shapes-world layer default, "
           "shapes); Adam runs at lr·4/5 with betas (0, 0.99^(4/5)) as the official StyleGAN2 generator optimiser")
    a("--lr-final", type=float, default=None, metavar="FRACTION",
      help="cosine-anneal the lr to this fraction of --lr by the last of --iters (default: 1 = constant, "
           "official; 1/3 with the shapes-world layer default, shapes; --resume with a larger --iters "
           "recomputes the schedule over the new count)")
    a("--mixing", type=float, default=None, help="style-mixing probability (default: 0, official)")
    a("--truncation", type=float, default=1.0, help="truncation psi of training latents (default: 1, official)")
    a("--noise-mode", choices=["random", "const"], default="random",
      help="random: one noise draw per step shared by both twins (default); const: stored noise")
    a("--layers", default=None,
      help="train these layers: names, globs or presets, e.g. b4.conv1,b8.* or texture/shape/all "
           "(default: every conv layer with the layer search, official; on the shapes world with no "
           "--layers/--auto-layer-*/--preset: 'texture' without the search, shapes: the only setting measured "
           "to reach sketch and pixel art while keeping the shapes. A --layers turns the search off unless "
           "--auto-layer-iters is given, then the search picks among them)")
    a("--adapter", choices=["full", "stylespace", "modulation"], default="full",
      help="what learns: full = the selected layers' weights (the official method, a whole generator per domain; "
           "default); stylespace = an offset per style channel of the selected layers (StyleDomain); modulation = "
           "a multiplier per input channel of the selected convs (HyperDomainNet). The adapters write a domain "
           "file of a few KB (domain.safetensors) that opens wherever a generator does; include bN.torgb in "
           "--layers to adapt ToRGB layers too")
    a("--auto-layer-k", type=_k, default=None,
      help="style indices unfrozen per step: N, a fraction of num_ws like 2/3, or all "
           "(default: 2, the best k measured on the shapes world; the official default is 1)")
    a("--auto-layer-iters", type=int, default=None,
      help="W+ optimisation steps of the layer search, 0 = off (default: 1, official; 0 with --layers)")
    a("--auto-layer-batch", type=int, default=None, help="latents in the layer search (default: 8, official)")
    a("--auto-layer-every", type=int, default=None,
      help="run the layer search every N iterations and reuse its choice in between (default: 1, official)")
    a("--lambda-direction", type=float, default=1.0, help="directional CLIP loss weight (default: 1, official)")
    a("--lambda-global", type=float, default=0.0, help="global CLIP loss weight (default: 0, official)")
    a("--lambda-norm", type=float, default=0.0, help="CLIP embedding-norm loss weight (default: 0)")
    a("--lambda-manifold", type=float, default=0.0, help="manifold angle loss weight (default: 0, official)")
    a("--lambda-patch", type=float, default=0.0, help="patch directional loss weight: the directional loss on 4 random crops per image "
      "(half the image side) cut at the same places from both twins (default: 0, official)")
    a("--lambda-consistency", type=float, default=0.0,
      help="in-domain angle consistency weight: keeps the pairwise CLIP angles of the batch's images, so the "
           "edit cannot move every image to one look (HyperDomainNet; default: 0)")
    a("--out", default="runs/nada", help="run directory (default: runs/nada)")
    a("--overwrite", action="store_true", help="replace an existing run directory")
    a("--resume", default=None, metavar="RUN_DIR",
      help="continue a run where it stopped (its config.json is used; --iters may extend it)")
    a("--sample-every", type=int, default=100, help="frozen-vs-adapted grid every N iterations (default: 100)")
    a("--sample-seeds", default="0-7", help="seeds of the sample grids (default: 0-7)")
    a("--sample-truncation", type=float, default=0.7, help="truncation psi of sample grids (default: 0.7, official)")
    a("--save-every", type=int, default=100, help="checkpoint every N iterations (default: 100)")
    a("--no-eval", action="store_true", help="skip the shapes-world evaluation at the end")
    a("--eval-seeds", type=int, default=256, help="seeds of the final shapes evaluation (default: 256)")
    a("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    a("--quiet", action="store_true", help="no progress bar, log lines only")


# What --resume may change; every other option belongs to the run (its config.json).
RESUME_CHANGES = {"resume", "iters", "quiet", "device", "no_eval", "eval_seeds", "sample_every", "save_every",
                  "func", "parser", "command", "verbose"}


def _refuse_resume_changes(args: argparse.Namespace) -> None:
    from ..errors import ConfigError

    given = [k for k, v in vars(args).items() if k not in RESUME_CHANGES and v != args.parser.get_default(k)]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(given))
        raise ConfigError(f"{flags} cannot change when resuming: the run keeps the options in its config.json",
                          "resume without them (--iters, --no-eval, --eval-seeds, --sample-every, --save-every, "
                          "--device and --quiet may change), or start a new run")


def config_from_args(args: argparse.Namespace):
    """argparse namespace → TrainConfig (the only place that knows both)."""
    from ..adapt import TrainConfig
    from ..adapt.rundir import check_resumable, load_run_config

    if args.resume:
        _refuse_resume_changes(args)
        check_resumable(args.resume)
        saved = load_run_config(args.resume)
        changes = dict(out=args.resume, resume=True, overwrite=False, quiet=args.quiet, device=args.device,
                       iters=args.iters if args.iters is not None else saved.iters)
        if args.no_eval:
            changes["evaluate"] = False
        for opt, key in (("eval_seeds", "eval_seeds"), ("sample_every", "sample_every"), ("save_every", "save_every")):
            if getattr(args, opt) != args.parser.get_default(opt):
                changes[key] = getattr(args, opt)
        return saved.replace(**changes)
    return TrainConfig.from_preset(args.preset, **train_options(args))


def train_options(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the options give (unset optional ones left out, so that the
    recipe or the preset fills them)."""
    kw = dict(
        out=args.out, overwrite=args.overwrite, generator=args.generator, train_generator=args.train_generator,
        clip=tuple(args.clip or ()), clip_weights=tuple(args.clip_weights or ()), source=args.source,
        target=getattr(args, "target", None), style_images=getattr(args, "style_images", None), lr=args.lr, adapter=args.adapter,
        truncation=args.truncation, noise_mode=args.noise_mode, seed=args.seed, layers=args.layers,
        lambda_direction=args.lambda_direction, lambda_global=args.lambda_global, lambda_norm=args.lambda_norm,
        lambda_manifold=args.lambda_manifold, lambda_patch=args.lambda_patch,
        lambda_consistency=args.lambda_consistency, sample_every=args.sample_every,
        sample_seeds=args.sample_seeds, sample_truncation=args.sample_truncation, save_every=args.save_every,
        evaluate=not args.no_eval, eval_seeds=args.eval_seeds, device=args.device, quiet=args.quiet,
    )
    optional = dict(iters=args.iters, batch=args.batch, lr_final=args.lr_final, mixing=args.mixing,
                    auto_layer_k=args.auto_layer_k, auto_layer_iters=args.auto_layer_iters,
                    auto_layer_batch=args.auto_layer_batch, auto_layer_every=args.auto_layer_every)
    kw.update({k: v for k, v in optional.items() if v is not None})
    return kw


def run(args: argparse.Namespace) -> int:
    from ..adapt import distributed, train

    ctx = distributed.init_from_env(args.device)  # under torchrun: data parallel over its ranks
    if ctx is not None:
        args.device = distributed.rank_device(ctx, args.device)
    cfg = config_from_args(args)
    result = train(cfg, dist=ctx)
    if ctx is not None and not ctx.is_main:
        return 0
    if result.interrupted:
        print(f"interrupted at iteration {result.iterations}; resume with: nada train --resume {result.run_dir}")
        return 130
    done = len(result.history)  # this call's iterations (a resumed run had some already)
    per_it = result.seconds / max(1, done)
    total = f" ({result.iterations} in all)" if done != result.iterations else ""
    print(f"trained {done} iterations{total} in {result.seconds:.1f} s ({per_it:.3f} s/it); "
          f"run directory {result.run_dir}")
    if cfg.adapter != "full":
        size = result.generator_path.stat().st_size / 1024
        print(f"domain file ({cfg.adapter}, {size:.1f} KiB): {result.generator_path} (use it as --generator, "
              f"or bake it: nada convert {result.generator_path} generator.safetensors)")
    else:
        print(f"adapted generator: {result.generator_path}")
    if result.rosinality_path:
        print(f"rosinality-layout copy: {result.rosinality_path}"
              + (f" (for nada and tools that read the state dict; rosinality's Generator class cannot rebuild "
                 f"this generator: {result.rosinality_note})" if result.rosinality_note else ""))
    if result.eval_table:
        print(result.eval_table)
    return 0
