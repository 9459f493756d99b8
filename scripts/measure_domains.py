"""Adapters against full fine-tuning on the shapes world: for each target and adapter, one
300-iteration `nada train` (shipped defaults), the oracle's figures on 256 seeds, the size of
what the run keeps per domain and the training seconds. Prints a markdown table and writes JSON.

    python scripts/measure_domains.py --out /tmp/domains [--targets sketch,neon,"pixel art"]

Time it alone: the seconds column is wall time on whatever else the machine runs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nada.adapt import TrainConfig, train


def measure(target: str, adapter: str, out: Path, iters: int, seeds: int) -> dict:
    run = out / f"{target.replace(' ', '_')}_{adapter}"
    cfg = TrainConfig(target=target, adapter=adapter, out=str(run), overwrite=True, iters=iters,
                      eval_seeds=seeds, quiet=True)
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    m = result.eval
    return {
        "target": target, "adapter": adapter, "run": str(run),
        "attainment": m["target_attainment"], "shape_kept": m["shape_preserved"],
        "centre_shift_px": m["centre_shift_px"], "diversity": m["diversity"],
        "bytes": result.generator_path.stat().st_size, "train_s": result.seconds, "wall_s": wall,
        "lr": cfg.lr, "layers": cfg.layers,
    }


def table(rows: list[dict]) -> str:
    lines = ["| target | adapter | attainment | shape kept | centre shift (px) | diversity | file | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = r["bytes"]
        text = f"{size / 2**20:.1f} MiB" if size > 2**20 else f"{size / 1024:.1f} KiB"
        lines.append(f"| {r['target']} | {r['adapter']} | {r['attainment']:.3f} | {r['shape_kept']:.3f} | "
                     f"{r['centre_shift_px']:.2f} | {r['diversity']:.3f} | {text} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/nada-domains")
    ap.add_argument("--targets", default="sketch,neon,pixel art")
    ap.add_argument("--adapters", default="full,stylespace,modulation")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=256)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for target in args.targets.split(","):
        for adapter in args.adapters.split(","):
            rows.append(measure(target.strip(), adapter.strip(), out, args.iters, args.seeds))
            print(json.dumps(rows[-1]), flush=True)
    (out / "domains.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
