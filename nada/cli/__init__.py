"""The ``nada`` command line. Only this package knows argparse; each subcommand lives in its
own module with ``register(subparsers)`` and ``run(args) -> int``, and calls the library API."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import NadaError

# subcommand name -> module (inside nada.cli) that registers and runs it
_COMMANDS = {
    "train": "train",
    "eval": "evaluate",
    "generate": "generate",
    "convert": "convert",
    "info": "info",
    "download": "download",
    "download-clip": "download_clip",
    "mapper": "mapper",
    "app": "app",
    "invert": "invert",
    "edit": "edit",
    "video": "video",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nada",
        description=(
            "Text-driven zero-shot domain adaptation of StyleGAN2 generators (StyleGAN-NADA). "
            "With no --generator and no --clip, every command uses the embedded shapes world "
            "in pretrained/, so it runs offline."
        ),
    )
    parser.add_argument("--version", action="version", version=f"nada {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _COMMANDS.items():
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        mod.register(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except NadaError as exc:
        print(f"nada {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nada {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
