"""Renderer throughput on one core: images/s per style for ``nada.shapes.renderer.render_batch``.

    python scripts/bench_renderer.py [--n 1000] [--grid grid.png]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from nada.shapes.renderer import SHAPES, STYLES, image_grid, random_factors, render_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="images per style")
    ap.add_argument("--grid", default=None, help="also save a PNG grid (styles x shapes) here")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    total_n, total_t = 0, 0.0
    for style in STYLES:
        factors = random_factors(rng, args.n, style=style)
        t0 = time.perf_counter()
        render_batch(factors, 0)
        dt = time.perf_counter() - t0
        total_n, total_t = total_n + args.n, total_t + dt
        print(f"{style:>10}: {args.n / dt:8.0f} images/s")
    print(f"{'all':>10}: {total_n / total_t:8.0f} images/s (one process, one core)")
    if args.grid:
        from PIL import Image

        fs = [f.replace(shape=s) for style in STYLES for s in SHAPES for f in random_factors(rng, 2, style=style)]
        Image.fromarray(image_grid(render_batch(fs, 0), 2 * len(SHAPES))).save(args.grid)
        print(f"grid saved to {args.grid}")


if __name__ == "__main__":
    main()
