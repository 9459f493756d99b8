"""``nada invert IMAGE...``: project images into a generator's W (or W+) space."""

from __future__ import annotations

import argparse


def add_inversion_options(p: argparse.ArgumentParser) -> None:
    """The options of an inversion, shared by ``nada invert``, ``nada edit`` and ``nada video``."""
    from ..invert.config import InvertConfig

    d = InvertConfig()
    g = p.add_argument_group("inversion")
    g.add_argument("--wplus", action=argparse.BooleanOptionalAction, default=d.wplus,
                   help="optimise one w per style layer (W+, the default: measured better for edits on the shapes "
                        "world, docs/invert.md); --no-wplus: one w for every layer (W, NVIDIA's projector)")
    g.add_argument("--steps", type=int, default=d.steps,
                   help=f"optimisation steps (default {d.steps}, measured on the shapes world: docs/invert.md)")
    g.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    g.add_argument("--loss", choices=["auto", "lpips", "pixel"], default=d.loss,
                   help="auto: LPIPS VGG16 when its weights are cached (`nada download vgg16-imagenet`), else pixel + "
                        "multi-scale pixel (default auto)")
    g.add_argument("--clip", default=None, help="CLIP model for an image-feature term (with --clip-weight), e.g. shapes")
    g.add_argument("--clip-weight", type=float, default=d.clip_weight, help="weight of the CLIP term (default 0)")
    g.add_argument("--no-noise-opt", action="store_true", help="keep the generator's const noise instead of optimising noise maps")
    g.add_argument("--noise-reg", type=float, default=d.noise_reg, help=f"noise regularisation weight (default {d.noise_reg:g})")
    g.add_argument("--encoder", default=None, help="an e4e checkpoint (e4e_ffhq_encode.pt): encode first, then refine")
    g.add_argument("--no-refine", action="store_true", help="with --encoder: use its codes as they are")
    g.add_argument("--align", choices=["auto", "face", "crop"], default="auto",
                   help="face: FFHQ alignment (needs dlib + `nada download dlib-landmarks-68`); crop: centre square; "
                        "auto: face for face generators, else crop")
    g.add_argument("--batch", type=int, default=d.batch,
                   help="images optimised together (default 16 up to 256 px, 1 above)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the jitter and the initial noise maps")


def inversion_config(args: argparse.Namespace):
    from ..invert.config import InvertConfig

    return InvertConfig(steps=args.steps, lr=args.lr, wplus=args.wplus, loss=args.loss, clip_weight=args.clip_weight,
                        optimize_noise=not args.no_noise_opt, noise_reg=args.noise_reg, batch=args.batch, seed=args.seed)


def invert_paths(args: argparse.Namespace, paths: list[str], G, gen_spec, device, progress: bool = True):
    """Read, align and invert ``paths`` with ``G`` as the options say; returns an Inversion."""
    from ..errors import ConfigError
    from ..invert.api import Inversion, invert_arrays, load_inputs, unique_stems

    cfg = inversion_config(args)
    if args.clip_weight > 0 and not args.clip:
        raise ConfigError("--clip-weight needs --clip SPEC", "e.g. --clip shapes")
    inputs, targets, how = load_inputs(paths, G.img_resolution, args.align, gen_spec)  # every file checked first
    encoder = None
    if args.encoder:
        from ..invert.e4e import load_e4e

        encoder = load_e4e(args.encoder, device)
    loss = None
    if args.clip and args.clip_weight > 0:
        from ..guidance import load_clip
        from ..invert.losses import build_loss

        loss = build_loss(cfg.loss, device, load_clip(args.clip, device), args.clip_weight)
    proj = invert_arrays(G, targets, cfg, encoder, refine=not args.no_refine, progress=progress, loss=loss)
    names = unique_stems([im.path for im in inputs])
    return Inversion(names, targets, proj, how, [im.notes for im in inputs], args.encoder)


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="invert images into a generator's latent space (W or W+)",
        description="Optimisation-based projection after NVIDIA's projector (w_avg start, noise maps optimised and "
                    "regularised, lr ramp). Writes latents.safetensors (ws + noise maps), NAME_recon.png, "
                    "NAME_input.png and metrics.json into --out.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--generator", default=None, help="generator spec (default: the embedded shapes generator)")
    p.add_argument("--out", default="inverted", help="output folder (default ./inverted)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_inversion_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoints import load_generator
    from ..device import resolve_device
    from ..errors import ConfigError
    from ..hub import resolve_generator
    from ..invert.api import write_inversion
    from ..invert.images import read_images
    from ..outputs import check_writable

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", "--out names a folder")
    check_writable(out)
    inversion_config(args)        # option errors before anything loads
    read_images(args.images)      # unreadable images before the model loads
    device = resolve_device(args.device)
    path = resolve_generator(args.generator)
    G = load_generator(path, device=device).generator
    inv = invert_paths(args, args.images, G, args.generator or path, device, progress=not args.quiet)
    summary = write_inversion(out, inv, path, inversion_config(args))
    print(f"inverted {len(inv.names)} image(s) into {out}/ ({summary['space']}, {summary['steps']} steps, "
          f"loss {summary['loss']}): mean PSNR {summary['mean_psnr_db']:.1f} dB, {summary['seconds_per_image']:.2f} s/image")
    return 0
