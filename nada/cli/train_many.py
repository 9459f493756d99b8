"""``nada train-many``: several target domains in one job (and across processes with torchrun);
see ``nada.adapt.many``."""

from __future__ import annotations

import argparse
import shlex

from .train import add_train_options

_FORMATTER = argparse.RawDescriptionHelpFormatter

# Options a line of --targets-file may give for its own domain. Domains that differ only in
# target, source, iterations and lr share each step; others (layers, adapter, seed, batch, loss
# weights) train in groups of their own, in the same process.
LINE_OPTIONS = {"--iters": int, "--lr": float, "--lr-final": float, "--source": str, "--name": str,
                "--layers": str, "--adapter": str, "--seed": int, "--batch": int,
                "--lambda-direction": float, "--lambda-global": float, "--lambda-norm": float,
                "--lambda-manifold": float, "--lambda-patch": float,
                "--lambda-consistency": float}


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="adapt one generator to many targets in one job (batched adapters; torchrun shards domains)",
        formatter_class=_FORMATTER,
        description=(
            "Train one domain per target. Each gets its own run directory under --out (as `nada train` "
            "writes it, evaluation included) and the job writes summary.json. With --adapter stylespace or "
            "modulation, domains that share their options train in one step: the frozen twin, the "
            "shared blocks and the frozen images' CLIP features are computed once for all. With --adapter full "
            "they train one after another, sharing the loaded models. A domain that fails is reported in the "
            "summary and the others go on.\n\n"
            "Across processes or machines: torchrun --nproc-per-node N -m nada train-many ... gives domain i "
            "to rank i mod N (gloo on CPU, NCCL on GPU); rank 0 writes the summary.\n\n"
            "--targets-file: one target per line, optionally followed by its own options "
            f"({', '.join(LINE_OPTIONS)}), e.g.\n  pixel art --iters 200\n  neon --lr 0.05 --layers all\n"
            "Blank lines and lines starting with # are skipped. Every other option applies to all domains; "
            "domains that differ in more than target, source, iterations and lr train in separate groups."
        ),
    )
    p.add_argument("--targets", default=None, help='comma-separated targets, e.g. sketch,neon,"pixel art"')
    p.add_argument("--targets-file", default=None, metavar="FILE", help="one target per line (see above)")
    p.add_argument("--out", default="runs/many", help="job folder: one run directory per domain (default: runs/many)")
    p.add_argument("--resume", action="store_true",
                   help="continue the job in --out: finished domains are kept, the others resume or start")
    p.add_argument("--domains-per-forward", type=int, default=None, metavar="N",
                   help="adapter domains in one forward of the trainable twin (default: 1: each domain's "
                        "numbers are then those of a run of its own, bit for bit, and 2 CPU cores measured no gain "
                        "from more; on a GPU more may pay, at the cost of float-rounding differences)")
    add_train_options(p, skip=frozenset({"target", "style_images", "resume", "out"}))
    p.set_defaults(func=run, parser=p)


def parse_targets(text: str | None, file_text: str | None, source: str = "--targets-file"):
    """[(target, {option: value})] from --targets and/or the lines of a targets file."""
    from ..errors import ConfigError

    entries = []
    if text:
        entries += [(t.strip(), {}) for t in text.split(",") if t.strip()]
    for n, line in enumerate((file_text or "").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise ConfigError(f"{source} line {n}: {exc}", "quote targets with matching quotes") from None
        cut = next((i for i, t in enumerate(tokens) if t.startswith("--")), len(tokens))
        target, rest, opts = " ".join(tokens[:cut]), tokens[cut:], {}
        if not target:
            raise ConfigError(f"{source} line {n}: no target before {rest[0]}", "start the line with the target text")
        while rest:
            flag = rest.pop(0).split("=", 1)
            if flag[0] not in LINE_OPTIONS:
                raise ConfigError(f"{source} line {n}: {flag[0]} cannot be set per domain",
                                  f"per-line options: {', '.join(LINE_OPTIONS)}; give the others on the command line")
            if len(flag) == 2:
                value = flag[1]
            elif rest:
                value = rest.pop(0)
            else:
                raise ConfigError(f"{source} line {n}: {flag[0]} needs a value")
            try:
                opts[flag[0][2:].replace("-", "_")] = LINE_OPTIONS[flag[0]](value)
            except ValueError:
                kind = {int: "an integer", float: "a number"}.get(LINE_OPTIONS[flag[0]], "valid")
                raise ConfigError(f"{source} line {n}: {flag[0]} {value!r} is not {kind}") from None
        entries.append((target, opts))
    return entries


def configs_from_args(args: argparse.Namespace):
    """(names, TrainConfigs) of the job's domains."""
    from pathlib import Path

    from ..adapt import TrainConfig
    from ..adapt.many import domain_names
    from ..errors import ConfigError
    from .train import train_options

    file_text = None
    if args.targets_file:
        path = Path(args.targets_file)
        if not path.is_file():
            raise ConfigError(f"--targets-file {path} does not exist", "pass a text file with one target per line")
        file_text = path.read_text()
    entries = parse_targets(args.targets, file_text, f"--targets-file {args.targets_file}")
    if not entries:
        raise ConfigError("no targets", 'pass --targets sketch,neon,"pixel art" or --targets-file FILE')
    kw = train_options(args)
    cfgs, names = [], []
    for target, opts in entries:
        opts = dict(opts)
        names.append(opts.pop("name", None))
        cfgs.append(TrainConfig.from_preset(args.preset, **{**kw, "target": target, **opts}))
    auto = domain_names([t for t, _ in entries])
    names = [n or a for n, a in zip(names, auto)]
    if len(set(names)) != len(names):
        raise ConfigError(f"two domains share the folder name {next(n for n in names if names.count(n) > 1)!r}",
                          "give one of them --name NAME in the targets file")
    return names, cfgs


def run(args: argparse.Namespace) -> int:
    from ..adapt import distributed, many

    ctx = distributed.init_from_env(args.device)
    if ctx is not None:
        args.device = distributed.rank_device(ctx, args.device)
    if args.resume:
        if args.targets or args.targets_file:
            from ..errors import ConfigError

            raise ConfigError("--resume continues the domains recorded in --out/many.json",
                              "drop --targets/--targets-file, or start a new job in another --out")
        names, cfgs = None, []
    else:
        names, cfgs = configs_from_args(args)
    if args.domains_per_forward is not None and args.domains_per_forward < 1:
        from ..errors import ConfigError

        raise ConfigError(f"--domains-per-forward {args.domains_per_forward} must be 1 or more")
    if ctx is None:
        result = many.train_many(cfgs, args.out, names=names, overwrite=args.overwrite, resume=args.resume,
                                 quiet=args.quiet, chunk=args.domains_per_forward)
    else:
        result = distributed.train_many_distributed(ctx, cfgs, args.out, names=names, resume=args.resume,
                                                    overwrite=args.overwrite, quiet=args.quiet,
                                                    chunk=args.domains_per_forward)
        if not ctx.is_main:
            return 0 if all(o.status == "done" for i, o in enumerate(result.outcomes)
                            if i % ctx.world == ctx.rank) else 1
    print(many.format_summary(result.outcomes))
    print(f"summary: {result.out / many.SUMMARY}")
    if any(o.status == "interrupted" for o in result.outcomes):
        print(f"interrupted; continue with: nada train-many --resume --out {result.out}")
        return 130
    return 0 if result.ok else 1
