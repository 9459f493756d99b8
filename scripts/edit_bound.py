"""How far CLIP guidance alone can take an in-domain edit: optimise each latent's W+ offset
directly (no mapper, no regulariser) against the mapper's global CLIP loss, and let the shapes
oracle say how many images reach the target. A mapper is a constrained version of this search,
so what this reaches bounds what a CLIP-guided mapper can reach on the same generator.

    python scripts/edit_bound.py --target star [--latents 96] [--steps 90] [--lr 0.02] [--seed 1]

Prints, every --report steps: the CLIP loss, the oracle's target attainment among latents not
already in the target, colour kept, the mean offset norm, and the shape histogram; first the
CLIP loss of the unedited images grouped by the oracle's reading (does CLIP prefer the target?).
"""

from __future__ import annotations

import argparse
import time

import torch

from nada.checkpoints import load_generator
from nada.guidance import load_clip
from nada.hub import resolve_generator
from nada.mapper.losses import MapperObjective
from nada.recipe import read_recipe
from nada.shapes.evaluate import parse_target
from nada.shapes.oracle import load_oracle
from nada.shapes.renderer import COLOURS, SHAPES, STYLES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", default="shapes", help="generator (default: the shipped shapes generator)")
    ap.add_argument("--target", default="star", help="a shape, colour or style word of the shapes world")
    ap.add_argument("--latents", type=int, default=96, help="latents optimised together")
    ap.add_argument("--steps", type=int, default=90, help="Adam steps")
    ap.add_argument("--lr", type=float, default=0.02, help="Adam lr on the W+ offsets")
    ap.add_argument("--wplus", action=argparse.BooleanOptionalAction, default=True, help="one offset per W+ row (else one per latent)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the latents")
    ap.add_argument("--report", type=int, default=30, help="report every N steps")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_generator(args.generator)
    G = load_generator(path, device="cpu").generator
    recipe = read_recipe(path)
    clip = (recipe.mapper.get("clip") or recipe.train.get("clip")) if recipe else ("shapes", "shapes-fine")
    encoders = [load_clip(spec, "cpu") for spec in clip]
    objective = MapperObjective(encoders, [1.0] * len(encoders), args.target)
    oracle = load_oracle("cpu")
    tgt = parse_target(args.target)
    names = {"shape": SHAPES, "colour": COLOURS, "style": STYLES}[tgt.kind]
    z = torch.randn(args.latents, G.z_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        ws = G.mapping(z, 0.7)
        img0 = G.synthesis(ws, noise_mode="const")
        p0 = oracle.predict(img0)
        source = objective.source_features(img0)
        loss0 = sum(1 - torch.nn.functional.cosine_similarity(e.encode_image(img0).float(), objective.target_feat[i][None])
                    for i, e in enumerate(encoders))
    fresh = p0[tgt.kind] != tgt.index
    print(f"{int(fresh.sum())} of {args.latents} latents not already {tgt.name}; CLIP loss of the unedited images:")
    for i, name in enumerate(names):
        sel = p0[tgt.kind] == i
        if sel.any():
            print(f"  oracle reads {name:<10} loss {float(loss0[sel].mean()):.4f} (n={int(sel.sum())})")
    offset = torch.zeros(ws.shape[0], ws.shape[1] if args.wplus else 1, ws.shape[2], requires_grad=True)
    opt = torch.optim.Adam([offset], lr=args.lr)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        w1 = ws + offset
        loss = objective.losses(source, G.synthesis(w1, noise_mode="const"), ws, w1, {"clip": 1.0})["clip"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.report == 0 or step == args.steps:
            with torch.no_grad():
                p1 = oracle.predict(G.synthesis(ws + offset, noise_mode="const"))
            hit = float((p1[tgt.kind][fresh] == tgt.index).float().mean())
            kept = "colour" if tgt.kind != "colour" else "shape"
            keep = float((p1[kept] == p0[kept]).float().mean())
            hist = torch.bincount(p1[tgt.kind][fresh], minlength=len(names)).tolist()
            print(f"step {step}: CLIP loss {float(loss.detach()):.4f}  {tgt.name} {hit:.3f}  {kept} kept {keep:.3f}  "
                  f"|offset| {float(offset.detach().norm(dim=-1).mean()):.2f}  {dict(zip(names, hist))}  "
                  f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
