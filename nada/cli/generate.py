"""``nada generate``: images from seeds with a generator, as one grid or individual PNGs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="generate images from seeds",
        description="z of seed s is np.random.RandomState(s).randn(z_dim), as in NVIDIA's generate.py.",
    )
    p.add_argument("--generator", default=None,
                   help="checkpoint path, `nada train` run directory (its adapted generator), known name "
                   "(see `nada download --list`), URL, or 'shapes' (default: the embedded shapes generator)")
    p.add_argument("--domain", action="append", default=[], metavar="FILE[:W]",
                   help="apply a domain file (or an --adapter run directory) with weight W (default 1); repeatable: "
                        "stylespace offsets add, modulation multipliers combine in log space (docs/domains.md). "
                        "With no --generator: the first domain's base generator")
    p.add_argument("--force", action="store_true",
                   help="apply domains trained on another generator of the same architecture (with a warning)")
    p.add_argument("--seeds", default="0-15", help="seed list, e.g. 0-15 or 1,5,9 (default 0-15)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1 = none)")
    p.add_argument("--trunc-cutoff", type=int, default=None, help="truncate only the first N style layers")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const",
                   help="noise inputs: stored const buffers, random per seed, or none (default const)")
    p.add_argument("--out", default="grid.png", help="grid PNG path, or a folder with --individual")
    p.add_argument("--individual", action="store_true", help="write seedNNNN.png files into --out")
    p.add_argument("--cols", type=int, default=None, help="grid columns (default ~sqrt of the count)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=run)


def _save_png(array, path: Path) -> None:
    from PIL import Image

    from ..checkpoints import atomic_write

    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def run(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..domains import load_with_domains
    from ..errors import ConfigError
    from ..networks.sampling import generate_images, image_grid, parse_seeds
    from ..outputs import check_writable

    check_writable(args.out)  # before the model loads

    seeds = parse_seeds(args.seeds)
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch} must be >= 1")
    device = resolve_device(args.device)
    loaded, path, _ = load_with_domains(args.generator, args.domain, args.force, device)
    G = loaded.generator
    if args.trunc_cutoff is not None and not 0 <= args.trunc_cutoff <= G.num_ws:
        raise ConfigError(f"--trunc-cutoff {args.trunc_cutoff} outside [0, {G.num_ws}]")
    images = generate_images(G, seeds, args.trunc, args.trunc_cutoff, args.noise_mode, args.batch)
    out = Path(args.out)
    if args.individual:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file", "with --individual, --out names a folder")
        out.mkdir(parents=True, exist_ok=True)
        for seed, img in zip(seeds, images):
            _save_png(img, out / f"seed{seed:04d}.png")
        print(f"wrote {len(seeds)} images to {out}/")
    else:
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder", "give a .png path, or add --individual")
        _save_png(image_grid(images, args.cols), out)
        print(f"wrote {out} ({len(seeds)} images from {path})")
    return 0
