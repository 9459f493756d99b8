"""Seconds per inversion step of ``nada invert`` at 1024² (config-f, random weights): one step is
a synthesis forward, the reconstruction loss, the backward pass to w and the noise maps, and an
Adam update, at batch 1. Timed with the pixel loss and with the LPIPS VGG16 loss (a random trunk:
the speed does not depend on the weights). On CPU, and on CUDA when one is here.

    python scripts/bench_invert.py --steps 3 [--threads 2] [--device cpu|cuda|all] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def bench(device: torch.device, resolution: int, steps: int, loss_kind: str, wplus: bool) -> dict:
    from nada.invert.config import InvertConfig
    from nada.invert.losses import LPIPSVGG, build_loss, lpips_heads_path
    from nada.invert.projector import project
    from nada.networks import Generator, GeneratorConfig

    torch.manual_seed(0)
    cfg = GeneratorConfig.preset("ffhq-1024") if resolution == 1024 else GeneratorConfig(img_resolution=resolution)
    G = Generator(cfg).to(device).eval().requires_grad_(False)
    target = torch.rand(1, 3, resolution, resolution, device=device) * 2 - 1
    if loss_kind == "lpips":
        from torchvision.models import vgg16

        from nada.invert.losses import ReconstructionLoss

        trunk = {f"features.{k}": v for k, v in vgg16().features.state_dict().items()}
        heads = torch.load(lpips_heads_path(), map_location="cpu", weights_only=True)
        loss = ReconstructionLoss([("lpips-vgg16 (random trunk)", LPIPSVGG(trunk, heads), 1.0)]).to(device)
    else:
        loss = build_loss("pixel", device)
    stamps: list[float] = []

    def on_step(done, total, value):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    icfg = InvertConfig(steps=steps + 1, wplus=wplus, loss="pixel", w_avg_samples=1000)
    t0 = time.perf_counter()
    project(G, target, icfg, loss=loss, progress=False, on_step=on_step)
    total = time.perf_counter() - t0
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # the first step (warm-up) left out
    return {"device": str(device), "resolution": resolution, "loss": loss.name, "space": "W+" if wplus else "W",
            "seconds_per_step": per_step, "steps_timed": len(stamps) - 1, "total_seconds": total,
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cuda when available)")
    ap.add_argument("--losses", default="pixel,lpips")
    ap.add_argument("--wplus", action="store_true")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    results = []
    for d in devices:
        if d == "cuda" and not torch.cuda.is_available():
            print("cuda: not available here, skipped")
            continue
        for kind in args.losses.split(","):
            r = bench(torch.device(d), args.resolution, args.steps, kind, args.wplus)
            results.append(r)
            print(f"{r['device']:>5} {r['resolution']}² {r['space']:>2} {r['loss']:<28} {r['seconds_per_step']:.3f} s/step "
                  f"({r['threads']} threads)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
