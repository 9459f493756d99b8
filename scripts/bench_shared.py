"""Time the README command quiet and beside another busy process (issue 24's shared-cores check).

Runs ``nada train --source photo --target sketch --quiet`` (extra arguments after ``--`` are
passed on) once alone, then once per load start with a second process busy on the same cores:
a plain PyTorch training loop with torch's defaults (every core, spinning OpenMP threads),
started ``--load-at`` seconds into the run (negative: before it) and stopped when the run ends.

    python scripts/bench_shared.py                        # quiet, load from 15 s, load from before
    python scripts/bench_shared.py --load-at 15 -- --iters 100 --seed 1

Report: the training seconds the command prints, its whole wall time, and each as a multiple of
the quiet run's.  Run it alone: anything else on the machine is part of the load.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

LOAD = """
import torch
torch.manual_seed(0)
layers = torch.nn.Sequential(*[m for _ in range(8) for m in (torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.LeakyReLU(0.2))])
opt = torch.optim.Adam(layers.parameters(), 1e-4)
x = torch.randn(8, 64, 32, 32)
while True:
    opt.zero_grad()
    layers(x).square().mean().backward()
    opt.step()
"""


def run_readme(args: list[str], load_at: float | None = None) -> tuple[float, float, str]:
    """One README-command run; returns (training s as printed, whole wall s, its output)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    load = None
    with tempfile.TemporaryDirectory() as out:
        if load_at is not None and load_at < 0:
            load = subprocess.Popen([sys.executable, "-c", LOAD], env=env)
            time.sleep(-load_at)
        start = time.perf_counter()
        proc = subprocess.Popen(["nada", "train", "--source", "photo", "--target", "sketch", "--quiet",
                                 "--out", os.path.join(out, "run"), *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if load_at is not None and load_at >= 0:
            try:
                proc.wait(timeout=load_at)
            except subprocess.TimeoutExpired:
                load = subprocess.Popen([sys.executable, "-c", LOAD], env=env)
        text = proc.communicate()[0]
        wall = time.perf_counter() - start
        if load is not None:
            load.kill()
            load.wait()
    if proc.returncode != 0:
        raise SystemExit(f"nada train failed (exit {proc.returncode}):\n{text[-2000:]}")
    found = re.search(r"trained \d+ iterations in ([0-9.]+) s", text)
    cpu_lines = [line for line in text.splitlines() if line.startswith("CPU") or "threads now" in line]
    for line in cpu_lines:
        print("   ", line.strip())
    return (float(found.group(1)) if found else float("nan")), wall, text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load-at", type=float, nargs="*", default=[15.0, -5.0],
                   help="seconds into the run at which the load starts; negative = that long before (default: 15 -5)")
    p.add_argument("nada_args", nargs="*", help="extra `nada train` arguments (after --)")
    a = p.parse_args()
    quiet_train, quiet_wall, _ = run_readme(a.nada_args)
    print(f"{'load':<16} {'training s':>10} {'whole s':>8} {'x quiet (training)':>19} {'x quiet (whole)':>16}")
    print(f"{'none':<16} {quiet_train:>10.1f} {quiet_wall:>8.1f} {1.0:>19.2f} {1.0:>16.2f}", flush=True)
    for at in a.load_at:
        train, wall, _ = run_readme(a.nada_args, at)
        label = f"from {at:g} s" if at >= 0 else f"{-at:g} s before"
        print(f"{label:<16} {train:>10.1f} {wall:>8.1f} {train / quiet_train:>19.2f} {wall / quiet_wall:>16.2f}",
              flush=True)


if __name__ == "__main__":
    main()
