"""Benchmark ``nada train-many`` against separate ``nada train`` runs on the shapes world.

For K = 1, 3, 8 targets: one batched job (``train_many``, adapter domains in one step) and K
runs of ``train`` one after another in the same process (models already loaded and cached, so
the separate runs are charged for their training loops only, not for starting a process and
loading). Reports adapted images per second per domain and for the whole job, loop time only.

    .venv/bin/python scripts/bench_many.py --iters 60 --ks 1 3 8 --adapter stylespace
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nada.adapt import TrainConfig, train
from nada.adapt.many import train_many

TARGETS = ["sketch", "neon", "pixel art", "blue", "red", "green", "yellow", "purple"]


def cfg(target: str, out: Path, args) -> TrainConfig:
    return TrainConfig(target=target, out=str(out), iters=args.iters, adapter=args.adapter, evaluate=False,
                       sample_every=0, save_every=0, quiet=True, device="cpu")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 3, 8])
    p.add_argument("--adapter", default="stylespace", choices=["stylespace", "modulation", "full"])
    p.add_argument("--chunks", type=int, nargs="*", default=[],
                   help="only time the job at K = max(--ks) for each of these domains-per-forward values")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_many_"))
    train(cfg("sketch", tmp / "warm", args).replace(iters=2))  # load and warm up once
    if args.chunks:
        k = max(args.ks)
        for rnd in range(2):
            for c in args.chunks:
                res = train_many([cfg(t, tmp, args) for t in TARGETS[:k]], tmp / f"chunk{c}-{rnd}", quiet=True, chunk=c)
                s = max(o.seconds for o in res.outcomes)
                print(f"K {k}, {c} domains per forward, round {rnd}: {s:.1f} s, {s / args.iters * 1000:.0f} ms/step")
        return
    print(f"adapter {args.adapter}, {args.iters} iterations per domain, shapes world defaults")
    print(f"{'K':>2}  {'separate s':>10}  {'job s':>7}  {'sep img/s/domain':>16}  {'job img/s/domain':>16}  "
          f"{'sep img/s all':>13}  {'job img/s all':>13}  {'speed-up':>8}")
    for k in args.ks:
        targets = TARGETS[:k]
        batch = cfg("sketch", tmp, args).batch
        t0 = time.perf_counter()
        sep = sum(train(cfg(t, tmp / f"sep{k}-{i}", args)).seconds for i, t in enumerate(targets))
        sep_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = train_many([cfg(t, tmp, args) for t in targets], tmp / f"job{k}", quiet=True)
        job_wall = time.perf_counter() - t0
        assert res.ok, [o.error for o in res.outcomes]
        job = max(o.seconds for o in res.outcomes)
        images = args.iters * batch
        print(f"{k:>2}  {sep:>10.1f}  {job:>7.1f}  {images / sep:>16.1f}  {images / job:>16.1f}  "
              f"{k * images / sep:>13.1f}  {k * images / job:>13.1f}  {sep / job:>7.2f}x"
              f"   (wall with outputs: {sep_wall:.1f} s vs {job_wall:.1f} s)")


if __name__ == "__main__":
    main()
