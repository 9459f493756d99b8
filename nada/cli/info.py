"""``nada info``: the environment (torch, device, CUDA ops, cache dirs), or a checkpoint's summary."""

from __future__ import annotations

import argparse
import os
import platform


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="show the environment, or describe a checkpoint",
        description="Without PATH: torch version, device, CUDA ops status and cache dirs. "
        "With PATH: the checkpoint's format and architecture.",
    )
    p.add_argument("path", nargs="?", help="a generator checkpoint (.pt, .pkl or nada .safetensors)")
    p.add_argument("--selfcheck", action="store_true", help="build the CUDA ops and run their self-check now")
    p.set_defaults(func=run)


def environment_report(selfcheck: bool = False) -> list[tuple[str, str]]:
    """Key/value lines describing this machine for ``nada info``."""
    import torch

    from .. import __version__, paths

    rows = [
        ("nada", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torch CUDA build", str(torch.version.cuda)),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows.append(("GPU", torch.cuda.get_device_name(0)))
    rows.append(("default device", "cuda" if torch.cuda.is_available() else "cpu"))
    from .. import cpu

    plan = cpu.plan()
    rows.append(("CPU threads", plan.describe() if plan is not None else f"{torch.get_num_threads()} (torch default)"))
    if plan is not None:
        rows.append(("CPU allocator", plan.allocator))
    try:
        import stylegan2_ops

        rows.extend(stylegan2_ops.status_report(run_selfcheck=selfcheck))
    except (ImportError, AttributeError) as exc:  # ops not installed / older
        rows.append(("stylegan2_ops", f"unavailable ({exc})"))
    where, how = paths.locate_pretrained()
    shipped = (where / "shapes_generator.safetensors").is_file()
    rows.append(("shapes world", f"{where} ({how}){'' if shipped else ': MISSING, set NADA_PRETRAINED'}"))
    rows.append(("weights cache", str(paths.weights_cache_dir())))
    rows.append(("torch extensions dir", os.environ.get("TORCH_EXTENSIONS_DIR", "(default)")))
    try:
        import open_clip

        rows.append(("open_clip", open_clip.__version__))
    except ImportError:
        rows.append(("open_clip", "not installed"))
    return rows


def run(args: argparse.Namespace) -> int:
    if args.path:
        from pathlib import Path

        from ..checkpoints import describe_checkpoint
        from ..hub import resolve_generator

        path = resolve_generator(args.path) if Path(args.path).is_dir() else args.path  # a run: its generator
        for key, value in describe_checkpoint(path):
            print(f"{key:>22}: {value}")
        return 0
    for key, value in environment_report(args.selfcheck):
        print(f"{key:>22}: {value}")
    return 0
