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
    "train-many": "train_many",
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

# Commands that run no tensor work: they skip the CPU runtime set-up (and its 0.3 s measurement).
_NO_COMPUTE = {"download", "download-clip"}


def _add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads`` on a command, or on each of its own subcommands (``nada mapper train``)."""
    children = [c for a in parser._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices.values()]
    for child in children:
        _add_threads_option(child)
    if not children:
        parser.add_argument("--threads", type=int, default=None, metavar="N",
                            help="CPU threads (default: every core that other processes leave free, "
                                 "re-measured during training; nada info shows the choice)")


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
        if name not in _NO_COMPUTE:
            _add_threads_option(sub.choices[name])
    return parser


def _early_threads(argv: list[str]) -> tuple[str | None, int | None, bool]:
    """(command, --threads value, readable) from the raw arguments: the CPU runtime must be set
    up before torch loads, and building the parser loads it (the subcommands import the
    library). Unreadable values are left to argparse to report."""
    command = next((a for a in argv if not a.startswith("-")), None)
    threads, readable = None, True
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--threads=") else (
            argv[i + 1] if a == "--threads" and i + 1 < len(argv) else None)
        if value is not None:
            try:
                threads = int(value)
            except ValueError:
                readable = False
    return command, threads, readable


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    command, threads, readable = _early_threads(raw)
    from .. import cpu  # light: no torch

    if command in _COMMANDS and command not in _NO_COMPUTE and readable and not {"-h", "--help"} & set(raw):
        try:
            cpu.configure(threads)
        except NadaError as exc:
            print(f"nada {command}: error: {exc}", file=sys.stderr)
            return 2
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
        if args.command not in _NO_COMPUTE and cpu.plan() is None:  # the early read missed it
            cpu.configure(getattr(args, "threads", None))
        if cpu.plan() is not None:
            logging.getLogger("nada.cpu").debug("CPU runtime: %s", cpu.plan().describe())
        return int(args.func(args) or 0)
    except NadaError as exc:
        print(f"nada {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nada {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
