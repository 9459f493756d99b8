"""Benchmark CLIP guidance: time of encode_image + backward to the input images.

Random-weight open_clip models (no download), generator-like input in [-1, 1]; each timed step
is differentiable preprocessing + image tower forward + backward of the features' sum.

    .venv/bin/python scripts/bench_clip.py --models ViT-B-32 ViT-B-16 --batch 2 --res 224 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import open_clip
import torch

from nada.guidance import ClipEncoder, imagenet_templates


def random_encoder(name: str, device: torch.device) -> ClipEncoder:
    """A ClipEncoder around a random-weight open_clip model (bench only)."""
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).to(device)
    pp = open_clip.get_model_preprocess_cfg(model)
    return ClipEncoder(f"{name}:random", model, open_clip.get_tokenizer(name), pp["size"][0],
                       pp["mean"], pp["std"], imagenet_templates())


def time_step(enc: ClipEncoder, batch: int, res: int, repeats: int, device: torch.device) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    img = (torch.rand(batch, 3, res, res, generator=gen) * 2 - 1).to(device).requires_grad_(True)
    times = []
    for i in range(repeats + 1):  # the first run is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        enc.encode_image(img).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
        img.grad = None
    assert all(p.grad is None for p in enc.parameters()), "gradients reached CLIP parameters"
    return times


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-B-16"], help="open_clip model names")
    p.add_argument("--batch", type=int, default=2, help="images per step")
    p.add_argument("--res", type=int, default=224, help="input resolution (square)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} res={args.res}² "
          f"torch={torch.__version__} open_clip={open_clip.__version__}")
    for name in args.models:
        enc = random_encoder(name, device)
        times = time_step(enc, args.batch, args.res, args.repeats, device)
        print(f"{name:12s} encode+backward: median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)})")


if __name__ == "__main__":
    main()
