"""``nada video --runs RUN...``: a cross-domain morph or a latent walk, as MP4 or GIF."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    from ..video import VideoConfig
    from .invert import add_inversion_options

    d = VideoConfig()
    p = sub.add_parser(
        name,
        help="a morph frozen → adapted runs (weights blended), or a latent walk, as .mp4 / .gif",
        description="Morph (default): the same latents rendered while the synthesis weights blend linearly from the "
                    "frozen generator through each run in turn (--loop: back to the frozen one). --walk z|w: a walk "
                    "through the seeds (slerp in Z, or lerp in W) shown by the frozen generator and every run side by "
                    "side. Latents: --seeds, --latents from `nada invert`, or --image files (inverted first).",
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="`nada train` run directories or generator files")
    p.add_argument("--generator", default=None, help="source generator (default: the one the runs were adapted from)")
    p.add_argument("--seeds", default=None, help="seed list (default 0-3), e.g. 0-3 or 1,5,9")
    p.add_argument("--trunc", type=float, default=0.7, help="truncation psi of the seeds' latents (default 0.7)")
    p.add_argument("--latents", default=None, help="latents.safetensors from `nada invert`")
    p.add_argument("--image", nargs="+", default=None, metavar="IMAGE", help="images to invert and show")
    p.add_argument("--walk", choices=["z", "w"], default=None, help="a latent walk (slerp in Z / lerp in W) instead of a morph")
    p.add_argument("--no-frozen", action="store_true", help="leave the frozen generator out (morph from the first run)")
    p.add_argument("--loop", action="store_true", help="end where it started (a seamless loop)")
    p.add_argument("--frames", type=int, default=d.frames, help=f"frames in all (default {d.frames})")
    p.add_argument("--fps", type=int, default=d.fps, help=f"frames per second (default {d.fps})")
    p.add_argument("--size", type=int, default=d.size, help=f"side of each image in px (default {d.size})")
    p.add_argument("--cols", type=int, default=None, help="morph: grid columns (default ~sqrt of the latents)")
    p.add_argument("--out", default="morph.mp4", help="output .mp4 or .gif (default morph.mp4)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_inversion_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..checkpoints import load_generator
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..hub import resolve_generator
    from ..invert.edit import load_inversion, load_run_generators, read_run, source_of
    from ..invert.images import read_images
    from ..networks.sampling import parse_seeds, z_from_seeds
    from ..outputs import check_writable
    from ..video import FORMATS, VideoConfig, morph_frames, walk_frames, write_video
    from .invert import inversion_config, invert_paths

    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out.name}: unknown video format", "name it .mp4 or .gif")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder", "give a .mp4 or .gif path")
    given = [x for x in (args.seeds, args.latents, args.image) if x]
    if len(given) > 1:
        raise ConfigError("give one of --seeds, --latents and --image")
    cfg = VideoConfig(frames=args.frames, fps=args.fps, size=args.size, loop=args.loop, cols=args.cols)
    check_writable(out)  # an existing file is replaced (atomically)
    inversion_config(args)
    if args.image:
        read_images(args.image)
    if args.walk == "z" and (args.latents or args.image):
        raise ConfigError("--walk z walks between seeds", "use --walk w with --latents or --image")
    seeds = parse_seeds(args.seeds or "0-3") if not (args.latents or args.image) else None
    runs = [read_run(r) for r in args.runs]
    device = resolve_device(args.device)
    src_spec = args.generator or source_of(runs)
    src_path = resolve_generator(src_spec)
    G = load_generator(src_path, device=device).generator
    gens = ([] if args.no_frozen else [G]) + [Ga for _, Ga in load_run_generators(G, runs, device)]
    if len(gens) < 2 and args.walk is None:
        raise ConfigError("a morph needs two generators", "pass more --runs, or keep the frozen generator in")
    noise = None
    if args.latents:
        ws, noise = load_inversion(args.latents, G.num_ws, G.w_dim)
    elif args.image:
        inv = invert_paths(args, args.image, G, src_spec, device, progress=not args.quiet)
        ws, noise = inv.projection.ws, inv.projection.noise
    else:
        z = z_from_seeds(seeds, G.z_dim).to(device)
        with torch.no_grad():
            ws = G.mapping(z, args.trunc)
    if args.walk is not None:
        if (seeds is not None and len(seeds) < 2) or ws.shape[0] < 2:
            raise ConfigError("a walk needs at least two keyframes", "pass two or more seeds / images")
        keys = z_from_seeds(seeds, G.z_dim) if args.walk == "z" else ws
        frames = walk_frames(gens, keys, args.walk, cfg, truncation=args.trunc)
    else:
        frames = morph_frames(gens, ws, cfg, noise)
    info = write_video(out, frames, cfg, progress=not args.quiet)
    print(f"wrote {out} ({info['frames']} frames, {info['width']}x{info['height']}, {cfg.fps} fps, "
          f"{info['bytes'] / 1024:.0f} KiB, encoded in {info['seconds']:.1f} s)")
    return 0
