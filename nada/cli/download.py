"""``nada download NAME``: fetch a known real generator (or a URL) into the weights cache."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="download a known StyleGAN2 checkpoint (checksum-verified, atomic)",
        description="Without NAME (or with --list): list the known checkpoints.",
    )
    p.add_argument("name", nargs="?", help="known name (e.g. ffhq-1024) or an http(s) URL")
    p.add_argument("--dest", default=None, help="file or folder (default: the weights cache)")
    p.add_argument("--sha256", default=None, help="expected SHA-256 (overrides the known one)")
    p.add_argument("--list", action="store_true", help="list known checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import hub, paths

    if args.list or not args.name:
        print(f"weights cache: {paths.weights_cache_dir()}")
        for c in hub.KNOWN.values():
            check = "sha256 known" if c.sha256 else "sha256 not recorded"
            print(f"  {c.name:<16} {c.resolution:>5}px  {c.format:<10} {check:<20} {c.description}")
        print("other weights (losses, alignment):")
        for c in hub.AUXILIARY.values():
            check = "sha256 known" if c.sha256 else "sha256 not recorded"
            print(f"  {c.name:<18} {c.format:<14} {check:<20} {c.description}")
        return 0
    path = hub.download(args.name, dest=args.dest, sha256=args.sha256, progress=not args.quiet)
    known = hub.KNOWN.get(args.name)
    if known is not None and known.format == "tensorflow":
        print("note: a TensorFlow pickle; nada reads its weights without TensorFlow (every command takes it; "
              "`nada convert` writes it once as nada .safetensors, which loads faster)")
    print(path)
    return 0
