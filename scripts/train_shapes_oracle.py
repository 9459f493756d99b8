"""Train the shapes-world oracle on fresh renders of every style; write it to ``pretrained/``.

    python scripts/train_shapes_oracle.py [--steps 2400] [--threads 1] [--batch 128] [--seed 0] [--out pretrained]

Every batch is rendered from ``numpy.random.default_rng([seed, step])``, so a run is reproducible
and resumes exactly from ``--ckpt`` (written every ``--ckpt-every`` steps). At the end the oracle
is measured on 1,000 fresh renders per style (seed ``seed + 1_000_000``) and the figures are
written to ``shapes_oracle_metrics.json`` next to the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nada.shapes.oracle import (
    CENTRE_OFFSET,
    CENTRE_SCALE,
    SIZE_OFFSET,
    SIZE_SCALE,
    Oracle,
    OracleConfig,
    OracleNet,
    save_oracle,
)
from nada.shapes.renderer import SHAPES, STYLES, STYLES_WITH_COLOUR, random_factors, render_batch, to_tensor

log = logging.getLogger("train_shapes_oracle")


def make_batch(seed: int, step: int, n: int, style: str | None = None):
    """Images [n,3,64,64] in [-1,1] and target tensors for one batch, determined by (seed, step)."""
    rng = np.random.default_rng([seed, step])
    factors = random_factors(rng, n, style=style)
    seeds = rng.integers(0, 2**31, size=n).tolist()
    x = to_tensor(render_batch(factors, seeds))
    t = {
        "style": torch.tensor([STYLES.index(f.style) for f in factors]),
        "shape": torch.tensor([SHAPES.index(f.shape) for f in factors]),
        "colour": torch.tensor([f.colour for f in factors]),
        "has_colour": torch.tensor([f.style in STYLES_WITH_COLOUR for f in factors]),
        "hue": torch.tensor([[math.cos(math.radians(f.hue)), math.sin(math.radians(f.hue))] for f in factors]),
        "centre": torch.tensor([[f.cx, f.cy] for f in factors]),
        "size": torch.tensor([f.size for f in factors]),
    }
    return x, t


def loss_fn(out: dict, t: dict) -> torch.Tensor:
    m = t["has_colour"].float()
    colour = (F.cross_entropy(out["colour"], t["colour"], reduction="none") * m).sum() / m.sum().clamp(min=1)
    hue = ((out["hue"] - t["hue"]).pow(2).sum(1) * m).sum() / m.sum().clamp(min=1)
    centre = F.smooth_l1_loss(out["centre"], (t["centre"] - CENTRE_OFFSET) / CENTRE_SCALE, beta=0.05)
    size = F.smooth_l1_loss(out["size"], (t["size"] - SIZE_OFFSET) / SIZE_SCALE, beta=0.05)
    return (
        F.cross_entropy(out["style"], t["style"])
        + F.cross_entropy(out["shape"], t["shape"])
        + colour
        + 0.5 * hue
        + 10.0 * centre
        + 4.0 * size
    )


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mild pixel noise so the judge tolerates generator outputs that are not exact renders."""
    sigma = torch.rand(x.shape[0], 1, 1, 1, generator=g) * 0.06
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


@torch.no_grad()
def measure(oracle: Oracle, seed: int, per_style: int = 1000) -> dict:
    """Accuracies and errors on ``per_style`` fresh renders of each style."""
    result = {}
    for si, style in enumerate(STYLES):
        x, t = make_batch(seed, 10_000 + si, per_style, style=style)
        p = oracle.predict(x)
        r = {
            "style_acc": (p["style"] == t["style"]).float().mean().item(),
            "shape_acc": (p["shape"] == t["shape"]).float().mean().item(),
            "centre_err_px": (p["centre"] - t["centre"]).norm(dim=1).mean().item(),
            "size_err_px": (p["size"] - t["size"]).abs().mean().item(),
        }
        if style in STYLES_WITH_COLOUR:
            r["colour_acc"] = (p["colour"] == t["colour"]).float().mean().item()
        result[style] = r
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2400, help="optimizer steps")
    ap.add_argument("--batch", type=int, default=128, help="renders per step")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    ap.add_argument("--seed", type=int, default=0, help="seeds data and initialisation")
    ap.add_argument("--out", default="pretrained", help="folder for the weights, config and metrics")
    ap.add_argument("--ckpt", default="runs/shapes_oracle/ckpt.pt", help="resume checkpoint path")
    ap.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 beat 2 on the shared 2-core box)")
    ap.add_argument("--eval-per-style", type=int, default=1000, help="fresh renders per style for the report")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    net = OracleNet(OracleConfig())
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    step, elapsed = 0, 0.0
    ckpt = Path(args.ckpt)
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        log.info("resumed from %s at step %d", ckpt, step)

    def save_ckpt() -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        state = {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}
        torch.save({**state, "step": step, "elapsed": elapsed + time.time() - t0}, tmp)
        os.replace(tmp, ckpt)

    net.train()
    t0 = time.time()
    bar = tqdm(total=args.steps, initial=step, desc="oracle", unit="step")
    while step < args.steps:
        x, t = make_batch(args.seed, step, args.batch)
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        out = net(augment(x, g))
        loss = loss_fn(out, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.ckpt_every == 0 or step == args.steps:
            save_ckpt()
    bar.close()
    train_s = elapsed + time.time() - t0

    path = save_oracle(net, args.out)
    metrics = measure(Oracle(net), args.seed + 1_000_000, args.eval_per_style)
    report = {
        "train_seconds": round(train_s, 1),
        "steps": args.steps,
        "batch": args.batch,
        "seed": args.seed,
        "threads": args.threads,
        "eval_per_style": args.eval_per_style,
        "metrics": metrics,
    }
    Path(args.out, "shapes_oracle_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("saved %s (%.0f s training)", path, train_s)
    for style, r in metrics.items():
        log.info("%10s: %s", style, ", ".join(f"{k} {v:.4f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
