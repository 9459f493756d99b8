"""``nada eval``: judge an adapted generator against its frozen source with the shapes oracle."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..hub import run_product

log = logging.getLogger(__name__)

# keys of a `nada train` run's config.json that may hold the target / source text
_TARGET_KEYS = ("target", "target_text", "target_class")
_SOURCE_KEYS = ("source", "source_text", "source_class")


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="measure an adaptation with the shapes oracle",
        description="Generate from fixed seeds with the frozen and the adapted generator and report "
        "target attainment, content preservation, diversity and (with --clip) CLIP alignment. "
        "Either RUN_DIR (a `nada train` run) or --generator, --source-generator and --target. For a "
        "`nada mapper train` run: edited vs unedited images of the same latents (--generator: apply the "
        "mapper to another generator of the same shape, e.g. an adapted twin).",
    )
    p.add_argument("run_dir", nargs="?", help="a `nada train` run directory (config.json + generator.safetensors)")
    p.add_argument("--generator", help="the adapted generator checkpoint")
    p.add_argument("--source-generator", help="the frozen source generator ('shapes' = the embedded one)")
    p.add_argument("--target", help="target style or colour, e.g. sketch, neon, 'pixel art', blue")
    p.add_argument("--source-text", default=None, help="source text for CLIP alignment (default: 'photo')")
    p.add_argument("--seeds", default="0-255", help="latent seeds, e.g. 0-255 or 1,5,9")
    p.add_argument("--out", default=None, help="JSON output (default: RUN_DIR/eval.json, else none)")
    p.add_argument("--clip", default=None, help="CLIP spec for the alignment metric (e.g. shapes); off by default")
    p.add_argument("--truncation-psi", type=float, default=1.0, help="truncation for both generators")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.set_defaults(func=run)


def _first(cfg: dict, keys: tuple[str, ...]):
    for k in keys:
        if cfg.get(k):
            return cfg[k]
    return None


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import load_generator
    from ..device import resolve_device
    from ..hub import resolve_generator
    from ..networks.sampling import parse_seeds
    from ..shapes.evaluate import evaluate, format_table, write_json

    adapted_path, source_spec, target, source_text = args.generator, args.source_generator, args.target, args.source_text
    out = args.out
    if args.run_dir:
        run_dir = Path(args.run_dir)
        cfg_path = run_dir / "config.json"
        if not cfg_path.is_file():
            raise ConfigError(f"{run_dir} has no config.json", "pass the directory `nada train` wrote")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("kind") == "mapper":
            return _run_mapper(args, run_dir)
        adapted_path = adapted_path or str(run_product(run_dir) or run_dir / "generator.safetensors")
        source_spec = source_spec or cfg.get("generator") or "shapes"
        target = target or _first(cfg, _TARGET_KEYS)
        source_text = source_text or _first(cfg, _SOURCE_KEYS)
        out = out or str(run_dir / "eval.json")
    if not adapted_path:
        raise ConfigError("no adapted generator given", "pass RUN_DIR or --generator PATH")
    if not target:
        raise ConfigError("no target given", "pass --target, e.g. --target sketch")
    if not Path(adapted_path).is_file():
        raise CheckpointError(f"adapted generator {adapted_path!r} is not a file", "check the path")
    device = resolve_device(args.device)
    frozen = load_generator(resolve_generator(source_spec), device=device).generator
    adapted = load_generator(adapted_path, device=device).generator
    clip = None
    if args.clip:
        try:
            from ..guidance import load_clip
        except ImportError as exc:
            raise ConfigError(f"--clip {args.clip!r}: CLIP guidance is unavailable ({exc})", "drop --clip") from None
        clip = load_clip(args.clip, device)
    metrics = evaluate(
        frozen,
        adapted,
        target,
        seeds=parse_seeds(args.seeds),
        clip=clip,
        source_text=source_text or "photo",
        target_text=str(target),
        batch_size=args.batch_size,
        truncation_psi=args.truncation_psi,
    )
    print(format_table(metrics))
    if out:
        print(f"written to {write_json(metrics, out)}")
    return 0


def _run_mapper(args: argparse.Namespace, run_dir: Path) -> int:
    """A `nada mapper train` run: the oracle on edited vs unedited images of the same latents."""
    from ..device import resolve_device
    from ..mapper import (
        evaluate_mapper,
        format_mapper_table,
        load_mapper_config,
        mapper_and_generator,
    )
    from ..networks.sampling import parse_seeds
    from ..shapes.evaluate import write_json

    cfg = load_mapper_config(run_dir)
    mapper_file = run_dir / "mapper.safetensors"
    if not mapper_file.is_file():
        raise ConfigError(f"{run_dir} has no mapper.safetensors (the run has not finished)",
                          f"finish it with: nada mapper train --resume {run_dir}")
    device = resolve_device(args.device)
    G, loaded, note = mapper_and_generator(str(mapper_file), args.generator, device)
    if note:
        print(f"note: {note}")
    metrics = evaluate_mapper(G, loaded.mapper, args.target or cfg.target, seeds=parse_seeds(args.seeds),
                              strength=loaded.strength, truncation=cfg.truncation, batch_size=args.batch_size)
    print(format_mapper_table(metrics))
    out = args.out or (str(run_dir / "eval.json") if args.generator is None else None)
    if out:
        print(f"written to {write_json(metrics, out)}")
    return 0
