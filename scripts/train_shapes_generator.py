"""Train the embedded shapes generator (``shapes-64`` StyleGAN2) on the ``photo`` style.

Regression onto the renderer: every latent z has ground truth ``render(factors_from_z(z))``
(see ``nada.shapes.generator_factors``), so G learns ``z -> photo of the shape z describes``
with an L1 loss at full and half resolution. Fresh z every step; seeded; resumable (a
checkpoint every few minutes, picked up automatically); writes the shipped file in nada's own
format, with the training command and step count in its metadata.

    python scripts/train_shapes_generator.py --minutes 40 --out pretrained/shapes_generator.safetensors
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nada.checkpoints import save_generator
from nada.networks import Generator, GeneratorConfig
from nada.shapes.generator_factors import render_from_z
from nada.shapes.renderer import to_tensor


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="pretrained/shapes_generator.safetensors", help="shipped model path")
    p.add_argument("--ckpt", default="runs/shapes_generator_ckpt.pt", help="resumable training state")
    p.add_argument("--steps", type=int, default=100000, help="maximum optimiser steps")
    p.add_argument("--minutes", type=float, default=40.0, help="stop after this much wall time (this run)")
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every-min", type=float, default=3.0, help="checkpoint cadence (minutes)")
    return p.parse_args(argv)


def loss_fn(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 at full resolution plus L1 of 2x-pooled images (weights shape and colour over texture)."""
    return F.l1_loss(img, target) + F.l1_loss(F.avg_pool2d(img, 2), F.avg_pool2d(target, 2))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    G = Generator(GeneratorConfig.preset("shapes-64"))
    # The mapping's lr multiplier (0.01) is part of the architecture; give it a larger step so
    # the regression shapes w quickly (the effective mapping step is still 100x smaller).
    mapping = list(G.mapping.parameters())
    synthesis = list(G.synthesis.parameters())
    opt = torch.optim.Adam(
        [{"params": synthesis, "lr": args.lr}, {"params": mapping, "lr": args.lr * 10}],
        betas=(0.9, 0.99),
    )
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    if os.path.exists(args.ckpt):
        state = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        G.load_state_dict(state["G"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        step = state["step"]
        print(f"resumed from {args.ckpt} at step {step}", file=sys.stderr)

    def save_ckpt():
        os.makedirs(os.path.dirname(args.ckpt) or ".", exist_ok=True)
        tmp = args.ckpt + ".tmp"
        torch.save({"G": G.state_dict(), "opt": opt.state_dict(), "rng": gen.get_state(), "step": step}, tmp)
        os.replace(tmp, args.ckpt)

    start = last_save = time.time()
    bar = tqdm(total=args.steps, initial=step, desc="shapes generator", dynamic_ncols=True)
    ema = None
    while step < args.steps and time.time() - start < args.minutes * 60:
        frac = step / args.steps
        for i, group in enumerate(opt.param_groups):  # cosine decay
            base = args.lr * (10 if i == 1 else 1)
            group["lr"] = base * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159)).item()))
        z = torch.randn(args.batch, G.z_dim, generator=gen)
        target = to_tensor(render_from_z(z))
        ws = G.mapping(z, update_w_avg=True)
        img = G.synthesis(ws, noise_mode="const")
        loss = loss_fn(img, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.4f}")
        if time.time() - last_save > args.save_every_min * 60:
            save_ckpt()
            last_save = time.time()
    bar.close()
    save_ckpt()
    with torch.no_grad():  # w_avg from many samples, not just the running average
        G.mapping.estimate_w_avg(20000, generator=torch.Generator().manual_seed(args.seed + 1))
    save_generator(
        G,
        args.out,
        metadata={
            "trained_by": "scripts/train_shapes_generator.py",
            "command": " ".join(["python", "scripts/train_shapes_generator.py"] + (argv or sys.argv[1:])),
            "steps": step,
            "batch": args.batch,
            "seed": args.seed,
            "final_loss_ema": ema,
            "domain": "shapes world, photo style",
        },
    )
    print(f"wrote {args.out} after {step} steps (loss ema {ema:.4f}, {time.time() - start:.0f} s this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
