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
    p.add_argument("input", metavar="IN", help="source checkpoint")
    p.add_argument("output", metavar="OUT", help="destination file")
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
    from ..recipe import RECIPE_KEY, read_recipe_json

    from ..outputs import check_writable

    check_writable(args.output)  # before the checkpoint is read
    fmt = args.format or ("rosinality" if str(args.output).lower().endswith((".pt", ".pth")) else "nada")
    loaded = load_generator(args.input)
    meta = dict(loaded.metadata)
    meta["converted_from"] = {"path": str(args.input), "format": loaded.format}
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
    print(f"{args.input} ({loaded.format}, {cfg.img_resolution}px) -> {out} ({fmt})")
    return 0
