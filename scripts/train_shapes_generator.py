"""Train the shapes-world StyleGAN2 (``shapes-64`` preset) on the ``photo`` style; ship it to ``pretrained/``.

    python scripts/train_shapes_generator.py [--steps 12000] [--coarse-steps 1000] [--batch 16] [--seed 0]
        [--time-limit-min 55] [--run-dir runs/shapes_generator] [--out pretrained/shapes_generator.safetensors]
        [--init G.safetensors] [--device cuda --workers 14 --batch 128]

The defaults train from scratch on 2 CPU cores in 46 min (measured 2026-11-26: on 1,000 fresh
latents the oracle finds photo 100%, the shape 77.7%, the colour 84.6%, the centre within 0.94 px).
The shipped weights went further (6 stages, 17 minutes of them on a GPU; see pretrained/MANIFEST.json):
the last, 12,700 steps at batch 128 in 8.3 min on an H100 with ``--lr-final 0.02`` (cosine
annealing), took the shape agreement from 91.1% to 96.1% (the same run with ``--boundary-frac
0.25``: 95.8%). ``--boundary-frac`` moves part of each batch next to a shape boundary, where the
misses gather; ``--lr-final`` anneals the lr by ``--steps`` or the time limit.

On a GPU the renderer is the bottleneck: ``--workers N`` renders ahead in N processes (an H200
with 14 workers ran 41 steps/s at batch 128, an H100 two runs side by side with 7 workers each at
28 steps/s each; 2 CPU cores run ~4 steps/s at batch 16).

Regression, not a GAN: ``G(z)`` (truncation 1, ``noise_mode='const'``) is pulled onto
``render_from_z(z)`` (``nada.shapes.generator_factors``), so every latent has ground-truth factors.
Loss = L1 on pixels + L2 on 2x/4x/8x average-pooled images (coarse layout and colour first) +
L1 on image gradients (crisp outlines). Coarse to fine, to fit a 2-core CPU: the first
``--coarse-steps`` train only the 16 px image of the skip architecture (~10x cheaper per step)
against the 4x-pooled render; the finer ToRGB layers start at zero so the full image then begins
as the up-sampled coarse one and the rest of the run adds detail at 64 px. Every step draws fresh z from ``torch.Generator`` seeded
by ``(seed, step)``, so a run is reproducible and resumes exactly from ``run-dir/state.pt``
(written every ``--ckpt-every-min`` minutes and on Ctrl-C or SIGTERM). The shipped model is the EMA of the
weights, with ``w_avg`` set to the mean of w over 10,000 latents so truncation (psi 0.7 in NADA
sampling) pulls towards a clean average image. ``--time-limit-min`` stops early (the step reached
is written into the checkpoint metadata); running the same command again resumes.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import signal
import sys
import time
from pathlib import Path

import stylegan2_ops
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nada.checkpoints import load_generator, save_generator
from nada.networks import Generator, GeneratorConfig
from nada.recipe import RECIPE_KEY
from nada.shapes.generator_factors import SHAPE_DIMS, render_from_z
from nada.shapes.renderer import image_grid, to_tensor, to_uint8

log = logging.getLogger("train_shapes_generator")

PRESET = "shapes-64"

# How to adapt the shipped generator (nada.recipe; `nada train` and `nada mapper train` start from
# it, the oracle judges its images). Measured best on the shapes world
# (docs/shapes-world-experiments.md): only the texture layers, no layer search, batch 16 at lr 0.03
# cosine-annealed to a third (neon keeps 0.81-0.90 of its shapes against 0.54-0.62 at batch 2,
# lr 0.01; sketch >= 0.90 on every seed measured); the two shapes CLIPs (16 px and 8 px patches)
# with equal weights keep sketch and pixel-art outlines that the 16 px model alone lets break.
RECIPE = {
    "train": {"layers": "texture", "lr": 0.03, "batch": 16, "lr_final": 1 / 3, "clip": ["shapes", "shapes-fine"]},
    # the small-file adapters reach neon and pixel art only with every layer, at a constant lr
    # (docs/domains.md, 2026-12-03): no one setting reaches all three styles within 0.05 of full
    "adapters": {"stylespace": {"layers": "all", "lr": 0.3, "lr_final": 1.0},
                 "modulation": {"layers": "all", "lr": 0.05, "lr_final": 1.0}},
    "mapper": {"clip": ["shapes", "shapes-fine"]},
    "evaluator": "shapes",
    "note": "measured best on the shapes world: docs/shapes-world-experiments.md",
}


def synthesize(G: Generator, ws: torch.Tensor, res: int) -> torch.Tensor:
    """G's skip-architecture image at resolution ``res`` (the sum of ToRGB outputs of blocks up to
    ``res``): the full image when ``res`` is G's resolution, a cheap coarse one below it."""
    S = G.synthesis
    if res == S.img_resolution:
        return S(ws, noise_mode="const")
    x = img = None
    w_idx = 0
    for r in S.block_resolutions:
        if r > res:
            break
        block = getattr(S, f"b{r}")
        if r == 4:
            x = block.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        for conv in block.conv_names():
            x = getattr(block, conv)(x, ws[:, w_idx], "const", None, None)
            w_idx += 1
        y = block.torgb(x, ws[:, w_idx])
        img = y if img is None else stylegan2_ops.upsample2d(img, block.resample_filter.float()) + y
    return img


@torch.no_grad()
def zero_fine_torgb(G: Generator, above: int) -> None:
    """Zero the ToRGB layers of blocks finer than ``above`` px, so after the coarse phase the full
    image starts as the up-sampled coarse image instead of coarse image + random noise."""
    for r in G.synthesis.block_resolutions:
        if r > above:
            torgb = getattr(G.synthesis, f"b{r}").torgb
            torgb.weight.zero_()
            torgb.bias.zero_()


def batch_z(seed: int, step: int, n: int, z_dim: int, boundary_frac: float = 0.0, boundary_width: float = 0.3) -> torch.Tensor:
    """The latents of one step, determined by (seed, step) alone. With ``boundary_frac`` > 0 that
    share of the batch is moved next to a shape boundary: the runner-up of ``z[7:12]`` is raised to
    within ``U(0, boundary_width)`` of the winner if it is further (the shape label stays the same). That is where a
    smooth generator blends two shapes, so those latents get more of the training signal."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    z = torch.randn(n, z_dim, generator=g)
    k = int(round(boundary_frac * n))
    if k > 0:
        gap = torch.rand(k, generator=g) * boundary_width
        top2 = z[:k, SHAPE_DIMS].topk(2, dim=1)
        rows = torch.arange(k)
        z[rows, SHAPE_DIMS.start + top2.indices[:, 1]] = torch.maximum(top2.values[:, 1], top2.values[:, 0] - gap)
    return z


def _render_step(job: tuple) -> tuple[int, torch.Tensor, "np.ndarray"]:
    seed, step, n, z_dim, frac, width = job
    torch.set_num_threads(1)
    z = batch_z(seed, step, n, z_dim, frac, width)
    return step, z, render_from_z(z)


def lr_scale(step: int, start: int, stop: int, elapsed_frac: float, final: float) -> float:
    """Cosine annealing factor from 1 (at ``start``) to ``final`` (at ``stop``). Progress is the
    larger of the step fraction and ``elapsed_frac`` (time used / time limit), so a run cut short by
    ``--time-limit-min`` still ends annealed."""
    if final >= 1.0:
        return 1.0
    p = max((step - start) / max(stop - start, 1), elapsed_frac)
    p = min(max(p, 0.0), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))


def batches(seed: int, start: int, stop: int, size_of, z_dim: int, workers: int, boundary: tuple[float, float] = (0.0, 0.3)):
    """Yield ``(step, z, uint8 renders)`` for steps ``start..stop-1``; with ``workers > 0`` a
    process pool renders up to ``2 * workers`` steps ahead (the stream is the same either way: it
    depends on the step alone). Close the generator to stop the pool."""
    if workers <= 0:
        for s in range(start, stop):
            yield _render_step((seed, s, size_of(s), z_dim, *boundary))
        return
    import collections
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # concurrent.futures, not multiprocessing.Pool: Pool.terminate() can deadlock when a worker is
    # idle in its task queue's get() (its _help_stuff_finish waits for that worker's read lock);
    # that hung CI's early-close test. shutdown(cancel_futures=True) drops the queued steps and
    # waits only for the ones being rendered.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    pending: collections.deque = collections.deque()
    nxt = start
    try:
        while True:
            while nxt < stop and len(pending) < 2 * workers:
                pending.append(pool.submit(_render_step, (seed, nxt, size_of(nxt), z_dim, *boundary)))
                nxt += 1
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def regression_loss(img: torch.Tensor, target: torch.Tensor, coarse: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 pixels + multi-scale L2 on pooled images + L1 on finite differences (edges)."""
    l1 = (img - target).abs().mean()
    ms = sum(F.mse_loss(F.avg_pool2d(img, k), F.avg_pool2d(target, k)) for k in ((2,) if coarse else (2, 4, 8)))
    gx, gy = _grad(img)
    tx, ty = _grad(target)
    edge = (gx - tx).abs().mean() + (gy - ty).abs().mean()
    total = l1 + 2.0 * ms + 0.5 * edge
    return total, {"l1": float(l1), "ms": float(ms), "edge": float(edge)}


@torch.no_grad()
def update_ema(ema: Generator, G: Generator, beta: float) -> None:
    for pe, p in zip(ema.parameters(), G.parameters()):
        pe.lerp_(p.detach(), 1.0 - beta)
    for be, b in zip(ema.buffers(), G.buffers()):
        be.copy_(b)


def make_optimizer(G: Generator, lr: float, mapping_lr_boost: float, beta1: float = 0.0, head: nn.Module | None = None) -> torch.optim.Optimizer:
    """Adam; the mapping network (equalised lr x0.01) gets a boosted lr so it learns z -> factors
    within a short regression run instead of the hundreds of thousands of GAN steps it assumes.
    The factor head (training only) shares the synthesis lr."""
    mapping = list(G.mapping.parameters())
    ids = {id(p) for p in mapping}
    rest = [p for p in G.parameters() if id(p) not in ids] + (list(head.parameters()) if head is not None else [])
    return torch.optim.Adam(
        [{"params": rest, "lr": lr}, {"params": mapping, "lr": lr * mapping_lr_boost}], betas=(beta1, 0.99), eps=1e-8
    )


def shape_labels(z: torch.Tensor) -> torch.Tensor:
    """Ground-truth shape index of each latent (``argmax(z[7:12])``, see generator_factors)."""
    return z[:, SHAPE_DIMS].argmax(1)


def save_state(path: Path, step: int, elapsed: float, G, ema, opt, head) -> None:
    """Everything needed to resume exactly (the data stream is a function of the step)."""
    tmp = path.with_suffix(".tmp")
    state = {"step": step, "elapsed": elapsed, "G": G.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict()}
    if head is not None:
        state["head"] = head.state_dict()
    torch.save(state, tmp)
    tmp.replace(path)


def export(ema: Generator, out: Path, step: int, args, seconds: float) -> Path:
    """EMA weights (a CPU copy) with ``w_avg`` measured on 10,000 latents, in nada's safetensors format."""
    G = copy.deepcopy(ema).cpu().eval()
    G.mapping.estimate_w_avg(10_000, generator=torch.Generator().manual_seed(args.seed + 7))
    meta = {
        "producer": "scripts/train_shapes_generator.py",
        "preset": PRESET,
        "style": "photo",
        "steps": step,
        "target_steps": args.steps,
        "coarse_steps": args.coarse_steps,
        "coarse_res": args.coarse_res,
        "command": "python scripts/train_shapes_generator.py " + " ".join(sys.argv[1:]),
        "batch": args.batch,
        "lr": args.lr,
        "beta1": args.beta1,
        "shape_head": args.shape_head,
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "factors": "nada.shapes.generator_factors.factors_from_z",
        "init": args.init,
        RECIPE_KEY: RECIPE,
    }
    return save_generator(G, out, metadata=meta)


@torch.no_grad()
def save_grid(ema: Generator, path: Path, seed: int) -> None:
    z = batch_z(seed + 99, 0, 16, ema.z_dim)
    zd = z.to(ema.mapping.w_avg.device)
    rows = [render_from_z(z), to_uint8(ema(zd, noise_mode="const")), to_uint8(ema(zd, truncation_psi=0.7, noise_mode="const"))]
    import numpy as np
    from PIL import Image

    Image.fromarray(image_grid(np.concatenate(rows), cols=16)).save(path)


def phase_of(step: int, args) -> int:
    """Output resolution trained at ``step``: ``--coarse-res`` for the first ``--coarse-steps``."""
    return args.coarse_res if step < args.coarse_steps else 64


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12000, help="total optimisation steps")
    ap.add_argument("--coarse-steps", type=int, default=1000, help="first steps train only the coarse image")
    ap.add_argument("--coarse-res", type=int, default=16, help="resolution of the coarse phase")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--coarse-batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--mapping-lr-boost", type=float, default=100.0, help="mapping lr = lr x this")
    ap.add_argument("--beta1", type=float, default=0.9,
                    help="Adam momentum (0 is StyleGAN2's GAN setting; 0.9 halves the pixel error per step in regression)")
    ap.add_argument("--shape-head", type=float, default=0.5,
                    help="weight of an auxiliary linear shape classifier on w (training only): makes the mapping "
                         "network encode the shape, which pixel losses alone barely reward")
    ap.add_argument("--ema-beta", type=float, default=0.98)
    ap.add_argument("--lr-final", type=float, default=1.0,
                    help="anneal the lr (cosine) to this fraction of --lr by --steps or the time limit, "
                         "whichever comes first, counted from this invocation's first step (1 = constant lr; "
                         "below 1 the schedule depends on time and where a run resumes, so resuming is not "
                         "bit-exact)")
    ap.add_argument("--boundary-frac", type=float, default=0.0,
                    help="share of each batch moved next to a shape boundary (see batch_z)")
    ap.add_argument("--boundary-width", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device for the networks (renders stay on the CPU)")
    ap.add_argument("--workers", type=int, default=0, help="render-ahead processes (0 = render in the training loop)")
    ap.add_argument("--time-limit-min", type=float, default=55.0, help="stop (resumably) after this long")
    ap.add_argument("--ckpt-every-min", type=float, default=3.0)
    ap.add_argument("--run-dir", default="runs/shapes_generator")
    ap.add_argument("--out", default="pretrained/shapes_generator.safetensors")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing run-dir/state.pt")
    ap.add_argument("--init", default=None, help="start from this exported generator (e.g. an earlier stage)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.pt"
    torch.manual_seed(args.seed)
    G = Generator(GeneratorConfig.preset(PRESET)).train()
    if args.init:
        G.load_state_dict(load_generator(args.init).generator.state_dict())
        args.coarse_steps = 0  # the initial generator already draws at 64 px
        log.info("initialised from %s", args.init)
    else:
        zero_fine_torgb(G, args.coarse_res)
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    device = torch.device(args.device)
    G.to(device)
    ema.to(device)
    head = nn.Linear(G.w_dim, 5).to(device) if args.shape_head > 0 else None
    opt = make_optimizer(G, args.lr, args.mapping_lr_boost, args.beta1, head)
    step, elapsed = 0, 0.0
    if state_path.is_file() and not args.fresh:
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        G.load_state_dict(st["G"])
        ema.load_state_dict(st["ema"])
        if head is not None and "head" in st:
            head.load_state_dict(st["head"])
        opt.load_state_dict(st["opt"])
        step, elapsed = st["step"], st["elapsed"]
        for group, lr in zip(opt.param_groups, (args.lr, args.lr * args.mapping_lr_boost)):
            group["lr"] = lr  # the command line wins over the saved learning rates
        log.info("resumed from %s at step %d", state_path, step)

    t0 = time.time()
    last_ckpt = t0

    def checkpoint() -> None:
        total = elapsed + time.time() - t0
        save_state(state_path, step, total, G, ema, opt, head)
        export(ema, Path(args.out), step, args, total)
        save_grid(ema, run_dir / "samples.png", args.seed)

    def on_term(signum, frame):  # SIGTERM (and SIGINT where a background shell ignores it)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bar = tqdm(total=args.steps, initial=step, desc="shapes G", dynamic_ncols=True)
    stream = batches(args.seed, step, args.steps, lambda s: args.coarse_batch if phase_of(s, args) < 64 else args.batch,
                     G.z_dim, args.workers, (args.boundary_frac, args.boundary_width))
    first_step = step
    base_lrs = [group["lr"] for group in opt.param_groups]
    try:
        while step < args.steps:
            res = phase_of(step, args)
            _, z, rendered = next(stream)
            z = z.to(device)
            target = to_tensor(rendered).to(device)
            if res < 64:
                target = F.avg_pool2d(target, 64 // res)
            ws = G.mapping(z, update_w_avg=True)
            img = synthesize(G, ws, res)
            loss, parts = regression_loss(img, target, coarse=res < 64)
            if head is not None:
                ce = F.cross_entropy(head(ws[:, 0]), shape_labels(z))
                loss = loss + args.shape_head * ce
                parts["ce"] = float(ce)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            scale = lr_scale(step, first_step, args.steps, (time.time() - t0) / (args.time_limit_min * 60), args.lr_final)
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * scale
            opt.step()
            update_ema(ema, G, args.ema_beta if res == 64 or step > 50 else 0.5)
            step += 1
            bar.update(1)
            bar.set_postfix(res=res, lr=f"{scale:.2f}", loss=f"{float(loss):.4f}", **{k: f"{v:.4f}" for k, v in parts.items()})
            now = time.time()
            if now - last_ckpt > args.ckpt_every_min * 60:
                checkpoint()
                last_ckpt = time.time()
            if now - t0 > args.time_limit_min * 60:
                log.info("time limit reached at step %d; run again to resume", step)
                break
    except KeyboardInterrupt:
        log.info("interrupted at step %d; saving a resumable checkpoint", step)
    finally:
        stream.close()
        bar.close()
        checkpoint()
    log.info("wrote %s (step %d, %.1f min in total)", args.out, step, (elapsed + time.time() - t0) / 60)


if __name__ == "__main__":
    main()
