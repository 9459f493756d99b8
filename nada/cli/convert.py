"""``nada convert IN OUT``: any supported generator checkpoint → nada safetensors or rosinality .pt."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="convert a generator checkpoint (rosinality .pt, NVIDIA .pkl, nada) to nada or rosinality format",
        description="Reads IN (format detected by content; NVIDIA pickles are read without running their code) "
        "and writes OUT atomically.",
    )
    p.add_argument("paths", nargs="+", metavar="[IN] OUT",
                   help="source checkpoint (a domain file or --adapter run directory bakes its base + domain) and "
                        "destination file; with --domain, IN defaults to the first domain's base generator")
    p.add_argument("--domain", action="append", default=[], metavar="FILE[:W]",
                   help="bake this domain into IN with weight W (default 1); repeatable (see nada generate --domain)")
    p.add_argument("--force", action="store_true",
                   help="bake domains trained on another generator of the same architecture (with a warning)")
    p.add_argument(
        "--format",
        choices=["nada", "rosinality"],
        default=None,
        help="output format (default: rosinality for .pt/.pth, else nada safetensors)",
    )
    p.add_argument("--recipe", metavar="JSON",
                   help="attach a training recipe (a JSON file: train / mapper / evaluator / note, see `nada info` "
                        "of the shipped shapes generator); nada format only; `--recipe none` removes one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import export_rosinality, load_generator, save_generator
    from ..errors import ConfigError
    from ..outputs import check_writable
    from ..recipe import RECIPE_KEY, read_recipe_json

    if len(args.paths) > 2 or (len(args.paths) == 1 and not args.domain):
        raise ConfigError(f"nada convert takes IN OUT (got {len(args.paths)} paths)",
                          "name the source and the destination; with --domain the source may be left out")
    args.input, args.output = (None, args.paths[0]) if len(args.paths) == 1 else args.paths
    check_writable(args.output)  # before the checkpoint is read
    fmt = args.format or ("rosinality" if str(args.output).lower().endswith((".pt", ".pth")) else "nada")
    if args.domain:
        from ..domains import load_with_domains

        loaded, args.input, domains = load_with_domains(args.input, args.domain, args.force)
    else:
        from pathlib import Path

        from ..hub import resolve_generator

        loaded = load_generator(resolve_generator(args.input) if Path(args.input).is_dir() else args.input)
    meta = dict(loaded.metadata)
    meta["converted_from"] = {"path": str(args.input), "format": loaded.format}
    if args.domain:
        meta["domains"] = [{"path": str(d.path), "weight": w, "kind": d.kind, "target": d.info.get("target")}
                           for d, w in domains]
    if args.recipe is not None:
        if fmt != "nada":
            raise ConfigError("--recipe needs the nada format", "write OUT as .safetensors (rosinality files carry none)")
        meta.pop(RECIPE_KEY, None)
        if args.recipe != "none":
            meta[RECIPE_KEY] = read_recipe_json(args.recipe).to_dict()
    if fmt == "nada":
        out = save_generator(loaded.generator, args.output, metadata=meta)
    else:
        out = export_rosinality(loaded.generator, args.output, metadata=meta)
    cfg = loaded.generator.cfg
    baked = "".join(f" + {d.path} x {w:g}" for d, w in domains) if args.domain else ""
    print(f"{args.input} ({loaded.format}, {cfg.img_resolution}px){baked} -> {out} ({fmt})")
    return 0
