"""``nada edit IMAGE --runs RUN...``: an image through every adapted generator, as one collage."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    from .invert import add_inversion_options

    p = sub.add_parser(
        name,
        help="invert an image and show it through adapted generators (a collage)",
        description="Inverts the image(s) with the runs' source generator (or takes --latents from `nada invert`), "
                    "renders the latent through each run's adapted generator (and a mapper) and writes a collage: "
                    "input, reconstruction, one labelled column per run.",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (or use --latents)")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="`nada train` run directories or generator files")
    p.add_argument("--generator", default=None, help="source generator (default: the one the runs were adapted from)")
    p.add_argument("--latents", default=None, help="latents.safetensors from `nada invert` instead of inverting images")
    p.add_argument("--mapper", default=None, help="a mapper run or file: one more column, the edit applied to the latent")
    p.add_argument("--strength", type=float, default=None, help="mapper strength (default: the mapper's own)")
    p.add_argument("--out", default="edit.png", help="collage PNG, or a folder with --individual (default edit.png)")
    p.add_argument("--individual", action="store_true", help="separate PNGs NAME_COLUMN.png in the --out folder")
    p.add_argument("--cell", type=int, default=None, help="cell size in px (default: the generator's, at least 128)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_inversion_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from PIL import Image

    from ..checkpoints import atomic_write, load_generator
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..hub import resolve_generator
    from ..invert.edit import (
        collage,
        load_inversion,
        load_run_generators,
        read_run,
        render,
        source_of,
    )
    from ..invert.images import read_images
    from ..outputs import check_writable
    from .invert import inversion_config, invert_paths

    out = Path(args.out)
    if args.individual and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", "with --individual, --out names a folder")
    if not args.individual and out.is_dir():
        raise ConfigError(f"--out {out} is a folder", "give a .png path, or add --individual")
    if bool(args.images) == bool(args.latents):
        raise ConfigError("give either IMAGE files or --latents FILE", "e.g. nada edit photo.png --runs runs/sketch")
    if args.strength is not None and not args.mapper:
        raise ConfigError("--strength needs --mapper", "pass --mapper RUN, or drop --strength")
    if args.cell is not None and not 16 <= args.cell <= 1024:
        raise ConfigError(f"--cell {args.cell} must be in [16, 1024]")
    check_writable(out)  # an existing file is replaced (atomically)
    inversion_config(args)
    if args.images:
        read_images(args.images)
    runs = [read_run(r) for r in args.runs]  # every run checked before anything loads
    device = resolve_device(args.device)
    src_spec = args.generator or source_of(runs)
    src_path = resolve_generator(src_spec)
    G = load_generator(src_path, device=device).generator
    adapted = load_run_generators(G, runs, device)
    mapper = None
    if args.mapper:
        from ..mapper.files import check_fits, load_mapper

        mapper = load_mapper(args.mapper, device=device)
        note = check_fits(mapper, G, src_path)
        if note:
            print(f"note: {note}")
    if args.latents:
        ws, noise = load_inversion(args.latents, G.num_ws, G.w_dim)
        names = [f"latent{i}" for i in range(ws.shape[0])]
        columns = []
    else:
        inv = invert_paths(args, args.images, G, src_spec, device, progress=not args.quiet)
        ws, noise, names = inv.projection.ws, inv.projection.noise, inv.names
        columns = [("input", inv.targets)]
    columns.append(("reconstruction", render(G, ws, noise)))
    for label, Ga in adapted:
        columns.append((label, render(Ga, ws, noise)))
    if mapper is not None:
        import torch

        strength = mapper.strength if args.strength is None else args.strength
        with torch.no_grad():
            ws_edit = mapper.mapper.edit(ws.to(device), strength)
        target = str(mapper.metadata.get("target") or "mapper")
        columns.append((f"{target} ×{strength:g}", render(G, ws_edit, noise)))
    if args.individual:
        out.mkdir(parents=True, exist_ok=True)
        for label, images in columns:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-") or "column"
            for name, img in zip(names, images):
                atomic_write(out / f"{name}_{slug}.png", lambda tmp, a=img: Image.fromarray(a).save(tmp, format="PNG"))
        print(f"wrote {len(columns) * len(names)} images to {out}/")
        return 0
    cell = args.cell or max(128, G.img_resolution)
    grid = collage(columns, cell=cell)
    atomic_write(out, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    print(f"wrote {out} ({len(names)} row(s): {', '.join(c[0] for c in columns)})")
    return 0
