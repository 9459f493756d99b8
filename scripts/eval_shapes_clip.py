"""Measure the shipped shapes CLIP: zero-shot style/shape/colour accuracy and style-direction alignment.

    .venv/bin/python scripts/eval_shapes_clip.py --n 1000 --seed 10000
"""

from __future__ import annotations

import argparse
import json

import torch

from nada.shapes.clip_model import load_shapes_clip, measure_shapes_clip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="fresh renders for the zero-shot accuracies")
    p.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation renders (training never uses it)")
    p.add_argument("--path", default=None, help="folder with the weights (default: pretrained/shapes_clip)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    print(json.dumps(measure_shapes_clip(load_shapes_clip(path=args.path), n=args.n, seed=args.seed), indent=1))


if __name__ == "__main__":
    main()
