"""Time the README command, with a CPU-speed probe around each run (issue 24's 45 s target).

Runs ``nada train --source photo --target sketch --seed S --quiet`` once per seed, alone, and
reports the training seconds it prints, its whole wall time, the run's share of CPU time
stolen by the hypervisor, its evaluation figures, and a probe of the machine's speed taken just
before and just after the run: fp32 matrix products on every core nada uses (GFLOP/s). On a
shared VM the host's other tenants slow every run without showing up as load inside the VM; the
probe tells a slow machine from slow code where the slowdown reaches the matrix units (on
2026-12-07's VM the slow spells did not: docs/speed.md).

    python scripts/bench_readme.py                      # seeds 0 1 2
    python scripts/bench_readme.py --seeds 0 0 0 --probe-s 3
    python scripts/bench_readme.py --seeds 0 -- --iters 100

Run it alone: anything else on the machine slows both the runs and the probes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

# The evaluation table's rows that issue 24 compares before and after a change.
QUALITY = {
    "attainment": r"target attainment\s+([0-9.]+)",
    "shape kept": r"shape preserved\s+([0-9.]+)",
    "centre shift": r"mean centre shift \(px\)\s+([0-9.]+)",
    "diversity": r"diversity kept\s+([0-9.]+)",
}


def probe(seconds: float, size: int = 512) -> float:
    """GFLOP/s of back-to-back ``size``² fp32 matmuls for about ``seconds``."""
    import torch

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    out = torch.empty(size, size)
    for _ in range(5):
        torch.mm(a, b, out=out)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            torch.mm(a, b, out=out)
        count += 10
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def _cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def run_once(seed: int, extra: list[str]) -> dict[str, float]:
    """One README-command run: training s, whole s, steal %, and the evaluation figures."""
    from bench_shared import run_readme  # the sibling script: the same command, run the same way

    before = _cpu_times() if os.path.exists("/proc/stat") else None
    train, wall, text = run_readme(["--seed", str(seed), *extra])
    row = {"training s": train, "whole s": wall}
    if before is not None:
        delta = [b - a for a, b in zip(before, _cpu_times())]
        row["steal %"] = 100 * delta[7] / max(1, sum(delta)) if len(delta) > 7 else float("nan")
    for name, pattern in QUALITY.items():
        m = re.search(pattern, text)
        row[name] = float(m.group(1)) if m else float("nan")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (default: 0 1 2)")
    p.add_argument("--probe-s", type=float, default=2.0, help="seconds of each speed probe (default: 2; 0 = none)")
    p.add_argument("nada_args", nargs="*", help="extra `nada train` arguments (after --)")
    a = p.parse_args()

    from nada import cpu

    plan = cpu.configure(None)  # the probe runs on the threads nada would choose
    print(f"machine: {plan.describe()}")
    cols = ["seed", "training s", "whole s", "steal %", "probe before", "probe after", *QUALITY]
    print("  ".join(f"{c:>12}" for c in cols), flush=True)
    rows = []
    for seed in a.seeds:
        pre = probe(a.probe_s) if a.probe_s > 0 else float("nan")
        row = run_once(seed, a.nada_args)
        post = probe(a.probe_s) if a.probe_s > 0 else float("nan")
        row.update({"seed": seed, "probe before": pre, "probe after": post})
        rows.append(row)
        print("  ".join(f"{row.get(c, float('nan')):>12.3f}" if c in QUALITY else f"{row.get(c, float('nan')):>12.1f}"
                        for c in cols), flush=True)
    if len(rows) > 1:
        train = [r["training s"] for r in rows]
        print(f"training s: median {statistics.median(train):.1f}, range {min(train):.1f}-{max(train):.1f}; "
              f"probe GFLOP/s range {min(min(r['probe before'], r['probe after']) for r in rows):.0f}-"
              f"{max(max(r['probe before'], r['probe after']) for r in rows):.0f}")


if __name__ == "__main__":
    main()
