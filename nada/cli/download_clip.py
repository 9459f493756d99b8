"""``nada download-clip SPEC``: fetch open_clip weights into the local cache (needs internet),
so that later runs, offline ones included, load them from disk."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="download CLIP weights into the local cache",
        description="Download the weights of an open_clip model spec (e.g. ViT-B-32:openai, ViT-B/16) "
        "into the Hugging Face / open_clip cache, so nada train can use them offline.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="CLIP model specs, e.g. ViT-B-32:openai")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ModelNotFoundError
    from ..guidance import encoder, parse_spec

    for text in args.specs:
        spec = parse_spec(text)
        if spec.name == "shapes" or spec.path:
            print(f"{text}: local, nothing to download")
            continue
        found = encoder.cached_weights(spec)
        if found:
            print(f"{spec.canonical}: already cached at {found}")
            continue
        try:
            path = encoder.download_weights(spec)
        except (OSError, RuntimeError) as exc:  # network errors from the hub client
            raise ModelNotFoundError(f"downloading {spec.canonical} failed: {exc}", "check the network and retry") from exc
        print(f"{spec.canonical}: downloaded to {path}")
    return 0
