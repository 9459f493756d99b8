"""Stack unedited/edited grids of several (mapper, generator) pairs into one figure, e.g. the
README's picture of one edit on the photo, neon and pixel-art generators.

    python scripts/mapper_figure.py --pair runs/m-blue shapes --pair runs/neon-blue runs/neon \\
        --seeds 0-7 --out docs/images/mapper-blue.png
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> None:
    from nada.adapt.rundir import save_png
    from nada.mapper import edit_grid, mapper_and_generator

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", nargs=2, action="append", required=True, metavar=("MAPPER", "GENERATOR"),
                   help="a mapper (file or run directory) and the generator to edit ('own' = its own)")
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--strength", type=float, default=None, help="default: each mapper's own")
    p.add_argument("--scale", type=int, default=2, help="integer upscaling of the figure (nearest)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    grids = []
    for mapper, gen in args.pair:
        G, loaded, _ = mapper_and_generator(mapper, None if gen == "own" else gen)
        s = loaded.strength if args.strength is None else args.strength
        grids.append(edit_grid(G, loaded.mapper, args.seeds, s))
    gap = np.zeros((6, grids[0].shape[1], 3), np.uint8)
    fig = np.concatenate([x for g in grids for x in (g, gap)][:-1])
    fig = np.repeat(np.repeat(fig, args.scale, 0), args.scale, 1)
    print(f"wrote {save_png(__import__('pathlib').Path(args.out), fig)} ({fig.shape[1]}x{fig.shape[0]})")


if __name__ == "__main__":
    main()
