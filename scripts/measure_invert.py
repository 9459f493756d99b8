"""Acceptance measurements of issue #19 on the shapes world (docs/invert.md):

1. invert N photo renders (``nada.shapes.renderer``, upright, as the generator's domain; with
   ``--rotated`` also randomly rotated ones) with the shapes generator; the oracle compares each
   reconstruction with its input: same shape, same colour bucket, centre distance; s / image;
2. edit them through adapted runs (``--runs sketch=DIR pixel art=DIR``): oracle target style
   and shape kept (against the input's shape);
3. a morph video of 4 seeds across the runs: encode time, and the decoded frame count and size.

    python scripts/measure_invert.py --rotated --runs sketch=runs/sketch "pixel art=runs/pixel" --out invert.json
    python scripts/measure_invert.py --no-wplus ...   # the same in W
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def oracle_compare(oracle, inputs: torch.Tensor, outputs: torch.Tensor) -> dict:
    a, b = oracle.predict(inputs), oracle.predict(outputs)
    return {
        "shape_same": float((a["shape"] == b["shape"]).float().mean()),
        "colour_same": float((a["colour"] == b["colour"]).float().mean()),
        "centre_error_px": float((a["centre"] - b["centre"]).norm(dim=1).mean()),
        "size_error_px": float((a["size"] - b["size"]).abs().mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    from nada.checkpoints import load_generator
    from nada.hub import resolve_generator
    from nada.invert.config import InvertConfig
    from nada.invert.edit import render
    from nada.invert.projector import project
    from nada.shapes import renderer as R
    from nada.shapes.evaluate import parse_target
    from nada.shapes.oracle import load_oracle
    from nada.video import VideoConfig, morph_frames, read_video, write_video

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="renders to invert")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the renders' factors")
    ap.add_argument("--steps", type=int, default=InvertConfig().steps)
    ap.add_argument("--lr", type=float, default=InvertConfig().lr)
    ap.add_argument("--wplus", action=argparse.BooleanOptionalAction, default=InvertConfig().wplus)
    ap.add_argument("--rotated", action="store_true", help="also invert randomly rotated renders (outside the domain)")
    ap.add_argument("--runs", nargs="*", default=[], metavar="TARGET=DIR", help="adapted runs to edit through")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is polite beside a training job)")
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    G = load_generator(resolve_generator("shapes")).generator
    oracle = load_oracle()
    cfg = InvertConfig(steps=args.steps, lr=args.lr, wplus=args.wplus)
    factors = R.random_factors(np.random.default_rng(args.seed), args.n, style="photo")
    sets = {"upright": [f.replace(rotation=0.0) for f in factors]}
    if args.rotated:
        sets["rotated"] = factors
    report: dict = {"n": args.n, "threads": args.threads, "config": cfg.to_dict(), "inversion": {}, "edit": {}}
    upright = None
    for name, fs in sets.items():
        x = R.to_tensor(R.render_batch(fs, list(range(args.n))))
        t0 = time.perf_counter()
        proj = project(G, x, cfg, progress=True)
        secs = time.perf_counter() - t0
        gt_shape = torch.tensor([R.SHAPES.index(f.shape) for f in fs])
        r = oracle_compare(oracle, x, proj.images)
        r.update(seconds_per_image=secs / args.n, loss=proj.loss_name,
                 mean_psnr_db=float(np.mean([m["psnr_db"] for m in proj.metrics])),
                 oracle_reads_input_shape=float((oracle.predict(x)["shape"] == gt_shape).float().mean()))
        report["inversion"][name] = r
        print(f"[{name}] shape {r['shape_same']:.3f}  colour {r['colour_same']:.3f}  centre {r['centre_error_px']:.2f} px  "
              f"PSNR {r['mean_psnr_db']:.1f} dB  {r['seconds_per_image']:.2f} s/image ({proj.loss_name}, {args.threads} thread(s))")
        if name == "upright":
            upright = (x, proj)
    x, proj = upright
    in_shape = oracle.predict(x)["shape"]
    gens = [G]
    for spec in args.runs:
        target, _, run = spec.partition("=")
        Ga = load_generator(resolve_generator(run)).generator
        gens.append(Ga)
        img = R.to_tensor(render(Ga, proj.ws, proj.noise))
        pred = oracle.predict(img)
        t = parse_target(target)
        r = {"target_style": float((pred["style"] == t.index).float().mean()),
             "shape_kept": float((pred["shape"] == in_shape).float().mean()),
             "colour_kept": float((pred["colour"] == oracle.predict(x)["colour"]).float().mean())
             if t.name in R.STYLES_WITH_COLOUR else None,
             "run": run}
        report["edit"][t.name] = r
        print(f"[edit {t.name}] target style {r['target_style']:.3f}  shape kept {r['shape_kept']:.3f}")
    if not args.no_video and len(gens) >= 2:
        import tempfile

        from nada.networks.sampling import z_from_seeds

        vcfg = VideoConfig(frames=60)
        with torch.no_grad():
            ws = G.mapping(z_from_seeds([0, 1, 2, 3], G.z_dim), 0.7)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "morph.mp4"
            t0 = time.perf_counter()
            info = write_video(path, morph_frames(gens, ws, vcfg), vcfg, progress=False)
            secs = time.perf_counter() - t0
            frames, size = read_video(path)
        report["video"] = {"generators": len(gens), "seeds": 4, "frames_written": info["frames"],
                           "frames_decoded": frames, "size": list(size), "encode_seconds": secs, "bytes": info["bytes"]}
        print(f"[video] {len(gens)} generators, 4 seeds: {info['frames']} frames {size[0]}x{size[1]} in {secs:.1f} s; "
              f"decoded {frames} frames")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
