"""Measure the shipped shapes generator against issue 5's acceptance figures; save a sample grid.

    python scripts/eval_shapes_generator.py [--generator pretrained/shapes_generator.safetensors]
        [--n 1000] [--seed 424242] [--grid runs/shapes_generator_grid.png] [--json OUT.json] [--oracle-dir DIR]

On ``--n`` fresh latents (from ``torch.Generator`` seeded ``--seed``, disjoint from training's
stream) at psi 1 and psi 0.7, the oracle judges G(z): share classified ``photo``, shape agreement
with ``factors_from_z`` ground truth, mean centre error (px), colour-bucket agreement, and the
pixel error against the exact render, and shape agreement by the latent's distance to a shape
boundary (margin = top minus runner-up of ``z[7:12]``; a smooth generator blends the two shapes
near a boundary, so that is where its errors gather). Smoothness: along 16-step z lerps between seed pairs, the
largest per-step change of the oracle's centre (px) and hue (deg), next to the same figures for
the exact renders along the same path (which jump only where the discrete shape flips).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nada.checkpoints import load_generator
from nada.shapes.generator_factors import factors_from_z, render_from_z, shape_margin
from nada.shapes.oracle import load_oracle
from nada.shapes.renderer import SHAPES, STYLES, image_grid, to_tensor, to_uint8


MARGIN_BINS = ((0.0, 0.2), (0.2, 0.4), (0.4, float("inf")))


def _hue_step(h: torch.Tensor) -> torch.Tensor:
    d = (h[1:] - h[:-1]).abs() % 360.0
    return torch.minimum(d, 360.0 - d)


@torch.no_grad()
def measure(G, oracle, n: int, seed: int, psi: float) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g)
    fs = factors_from_z(z)
    img = torch.cat([G(c, truncation_psi=psi, noise_mode="const") for c in z.split(250)])
    p = oracle.predict(img)
    out = {"photo": float((p["style"] == STYLES.index("photo")).float().mean())}
    if psi == 1:  # ground truth holds only for untruncated latents
        shape = torch.tensor([SHAPES.index(f.shape) for f in fs])
        centre = torch.tensor([[f.cx, f.cy] for f in fs], dtype=torch.float32)
        colour = torch.tensor([f.colour for f in fs])
        agree = p["shape"] == shape
        out["shape_agree"] = float(agree.float().mean())
        margin = shape_margin(z)
        for lo, hi in MARGIN_BINS:
            sel = (margin >= lo) & (margin < hi)
            out[f"shape_agree_margin_{lo}-{hi:g}"] = float(agree[sel].float().mean()) if sel.any() else None
            out[f"share_margin_{lo}-{hi:g}"] = float(sel.float().mean())
        out["colour_agree"] = float((p["colour"] == colour).float().mean())
        out["centre_err_px"] = float((p["centre"] - centre).norm(dim=1).mean())
        out["pixel_mae"] = float((img - to_tensor(render_from_z(z))).abs().mean())
    return out


@torch.no_grad()
def smoothness(G, oracle, pairs: int, seed: int, steps: int = 16) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed + 1)
    t = torch.linspace(0, 1, steps)[:, None]
    worst = {"G_centre_step_px": 0.0, "G_hue_step_deg": 0.0, "render_centre_step_px": 0.0, "render_hue_step_deg": 0.0}
    mean_pix = []
    for _ in range(pairs):
        a, b = torch.randn(2, G.z_dim, generator=g)
        z = a[None] + t * (b - a)[None]
        gi = G(z, noise_mode="const")
        ri = to_tensor(render_from_z(z))
        for key, x in (("G", gi), ("render", ri)):
            p = oracle.predict(x)
            centre_step = float((p["centre"][1:] - p["centre"][:-1]).norm(dim=1).max())
            worst[f"{key}_centre_step_px"] = max(worst[f"{key}_centre_step_px"], centre_step)
            worst[f"{key}_hue_step_deg"] = max(worst[f"{key}_hue_step_deg"], float(_hue_step(p["hue"]).max()))
        mean_pix.append(float((gi[1:] - gi[:-1]).abs().mean(dim=(1, 2, 3)).max()))
    worst["G_max_pixel_step_mae"] = max(mean_pix)
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", default="pretrained/shapes_generator.safetensors")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=20, help="seed pairs for the interpolation check")
    ap.add_argument("--seed", type=int, default=424242)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", default="runs/shapes_generator_grid.png")
    ap.add_argument("--json", default=None)
    ap.add_argument("--oracle-dir", default=None, help="folder with the oracle (default: pretrained/)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_generator(args.generator, "cpu")
    G = loaded.generator.eval()
    oracle = load_oracle("cpu", args.oracle_dir)
    res = {
        "psi1": measure(G, oracle, args.n, args.seed, 1.0),
        "psi0.7": measure(G, oracle, args.n, args.seed, 0.7),
        "interp": smoothness(G, oracle, args.pairs, args.seed),
        "file_bytes": Path(args.generator).stat().st_size,
        "steps": loaded.metadata.get("steps"),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    with torch.no_grad():
        z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(args.seed + 2))
        rows = [render_from_z(z), to_uint8(G(z, noise_mode="const")), to_uint8(G(z, truncation_psi=0.7, noise_mode="const"))]
        a, b = z[0], z[1]
        rows.append(to_uint8(G(a[None] + torch.linspace(0, 1, 16)[:, None] * (b - a)[None], noise_mode="const")))
    Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(np.concatenate(rows), cols=16)).save(args.grid)
    print(f"grid (rows: render, G psi 1, G psi 0.7, lerp) -> {args.grid}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
