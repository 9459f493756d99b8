"""Time nada's generator on CPU: forward (no grad) and forward+backward, with peak memory.

Each case runs in its own process so the peak RSS belongs to that case alone.

    python scripts/bench_generator.py                       # 256 and config-f 1024, batch 2
    python scripts/bench_generator.py --presets shapes-64 --batch 8 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _worker(preset: str, mode: str, batch: int, repeats: int, threads: int) -> dict:
    import torch

    from nada.networks import Generator, GeneratorConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.preset(preset))
    z = torch.randn(batch, G.z_dim)
    times = []
    for i in range(repeats + 1):  # first run is warm-up
        t = time.perf_counter()
        if mode == "forward":
            with torch.no_grad():
                G(z)
        else:
            G(z).square().mean().backward()
            G.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    return {
        "preset": preset,
        "mode": mode,
        "batch": batch,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params_m": sum(p.numel() for p in G.parameters()) / 1e6,
        "threads": threads,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["256", "config-f-1024"])
    ap.add_argument("--modes", nargs="+", default=["forward", "forward+backward"],
                    choices=["forward", "forward+backward"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object per case")
    ap.add_argument("--worker", nargs=2, metavar=("PRESET", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.batch, args.repeats, args.threads)))
        return 0
    if not args.json:
        print(f"{'preset':<14} {'mode':<17} {'batch':>5} {'median s':>9} {'min s':>8} {'peak RSS MiB':>13} {'params M':>9}")
    for preset in args.presets:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--worker", preset, mode, "--batch", str(args.batch),
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"{preset} {mode}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
                return 1
            r = json.loads(res.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(r))
            else:
                print(f"{preset:<14} {mode:<17} {r['batch']:>5} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
                      f"{r['peak_rss_mib']:>13.0f} {r['params_m']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
