"""Train the shapes CLIP contrastively on renders (seeded, resumable) and export it to pretrained/shapes_clip/.

Each step draws ``pairs`` factor sets, renders each in two different styles, and captions every
image with a random subset of its factors ("a sketch of a star", "neon red heart", "pixel art").
Loss: InfoNCE with a learnable temperature and multi-positive targets (a caption is a positive for
every image in the batch it truly describes, so identical captions are not false negatives), plus
a direction loss aligning each pair's image difference with the text difference of its two styles,
the quantity NADA's directional loss relies on.

    .venv/bin/python scripts/train_shapes_clip.py --seed 0 --threads 1

The defaults are the shipped recipe (9000 steps, ~33 min on one CPU thread; resumable from
``--work``). Half the images get mild photometric jitter with unchanged captions, so the model
reads style from strokes, fills and backgrounds rather than from colour statistics.
"""

from __future__ import annotations

import argparse
import sys
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nada.shapes.clip_model import (default_dir, TEMPLATES, ShapesClipConfig, WordTokenizer, build_model,
                                    load_shapes_clip, measure_shapes_clip, save_shapes_clip, world_words)
from nada.shapes.renderer import COLOURS, SHAPES, STYLES, STYLES_WITH_COLOUR, random_factors, render_batch, to_tensor

logger = logging.getLogger(__name__)


def caption(rng: np.random.Generator, style: str, shape: str, colour: str | None,
            shape_mention: float = 0.6) -> tuple[str, tuple]:
    """A random caption of the given factors and what it mentions: (style|None, shape|None, colour|None)."""
    while True:
        s = style if rng.random() < 0.6 else None
        h = shape if rng.random() < shape_mention else None
        c = colour if colour is not None and rng.random() < 0.5 else None
        if s or h or c:
            break
    content = " ".join(w for w in (c, h) if w)
    if s and content:
        form = rng.integers(4)
        if form == 0:
            text = f"{s} {content}"
        elif form == 1:
            text = f"a {s} of a {content}"
        elif form == 2:
            text = f"a {content} in {s} style"
        else:
            text = TEMPLATES[rng.integers(len(TEMPLATES))].format(f"{s} {content}")
    elif s:
        text = rng.choice([f"a {s} of a shape", f"{s}", f"an image in {s} style",
                           TEMPLATES[rng.integers(len(TEMPLATES))].format(s)])
    else:
        text = TEMPLATES[rng.integers(len(TEMPLATES))].format(content)
    return str(text), (s, h, c)


def photometric_jitter(rng: np.random.Generator, images: torch.Tensor, prob: float) -> torch.Tensor:
    """Mild brightness/contrast/saturation/tint changes on a share ``prob`` of the images, captions
    unchanged: a style is its strokes, fills and backgrounds, not the image's colour statistics.
    Without this the model reads "sketch" off a slightly paler, greyer photo, and NADA's
    directional loss is then satisfied by a faint tint instead of a real change of style."""
    if prob <= 0:
        return images
    n = images.shape[0]
    pick = torch.from_numpy(rng.random(n) < prob).float().view(n, 1, 1, 1)
    u = lambda lo, hi, *shape: torch.from_numpy(rng.uniform(lo, hi, size=(n, *shape)).astype(np.float32))
    grey = images.mean(1, keepdim=True)
    out = grey + (images - grey) * u(0.6, 1.25, 1, 1, 1)          # saturation
    mean = out.mean((1, 2, 3), keepdim=True)
    out = mean + (out - mean) * u(0.75, 1.2, 1, 1, 1)            # contrast
    out = out + u(-0.12, 0.12, 1, 1, 1) + u(-0.06, 0.06, 3, 1, 1)  # brightness, tint
    out = out.clamp(-1, 1)
    return pick * out + (1 - pick) * images


def batch(rng: np.random.Generator, pairs: int, shape_mention: float = 0.6, jitter: float = 0.0):
    """Images [2P,...] (pair p = rows 2p, 2p+1), captions, mentions, true factors, and direction prompts."""
    base = random_factors(rng, pairs)
    factors, caps, mentions, dir_a, dir_b = [], [], [], [], []
    for f in base:
        a, b = rng.choice(len(STYLES), size=2, replace=False)
        sa, sb = STYLES[a], STYLES[b]
        for st in (sa, sb):
            g = f.replace(style=st)
            factors.append(g)
            col = COLOURS[g.colour] if st in STYLES_WITH_COLOUR else None
            t, m = caption(rng, st, g.shape, col, shape_mention)
            caps.append(t)
            mentions.append(m)
        tpl = TEMPLATES[rng.integers(len(TEMPLATES))]
        dir_a.append(tpl.format(sa))
        dir_b.append(tpl.format(sb))
    seeds = rng.integers(0, 2**31, size=len(factors)).tolist()
    images = photometric_jitter(rng, to_tensor(render_batch(factors, seeds)), jitter)
    truth = [(g.style, g.shape, COLOURS[g.colour] if g.style in STYLES_WITH_COLOUR else None) for g in factors]
    compat = torch.tensor([[all(m is None or m == t for m, t in zip(men, tr)) for tr in truth] for men in mentions],
                          dtype=torch.float32)  # [text, image]
    return images, caps, compat, dir_a, dir_b


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=9000)
    p.add_argument("--pairs", type=int, default=48, help="factor sets per step (2 renders each)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dir-weight", type=float, default=0.1, help="weight of the style-direction loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("runs/shapes_clip"), help="checkpoint folder (resumed if present)")
    p.add_argument("--out", type=Path, default=default_dir())
    p.add_argument("--eval-n", type=int, default=1000)
    p.add_argument("--patch-size", type=int, default=16, help="ViT patch size (64 px images)")
    p.add_argument("--jitter", type=float, default=0.5, help="share of images given photometric jitter")
    p.add_argument("--shape-mention", type=float, default=0.8, help="probability a caption names the shape")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cfg = ShapesClipConfig(patch_size=args.patch_size, context_length=12)
    tok = WordTokenizer(world_words(), cfg.context_length)
    model = build_model(cfg, tok.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    ckpt = args.work / "checkpoint.pt"
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if state["sched"].get("total_steps") != args.steps:
            sys.exit(
                f"error: {ckpt} belongs to a run with --steps {state['sched'].get('total_steps')}; "
                "resume with that --steps, or start a new run with another --work folder"
            )
        sched.load_state_dict(state["sched"])
        start = int(state["step"])
        logger.info("resumed from %s at step %d", ckpt, start)
    args.work.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    model.train()
    for step in (bar := tqdm(range(start, args.steps), initial=start, total=args.steps)):
        rng = np.random.default_rng([args.seed, step])  # per-step stream: resuming replays the same data
        images, caps, compat, dir_a, dir_b = batch(rng, args.pairs, args.shape_mention, args.jitter)
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(tok(caps + dir_a + dir_b)), dim=-1)
        n = len(caps)
        cap_txt, ta, tb = txt[:n], txt[n : n + args.pairs], txt[n + args.pairs :]
        logits = model.logit_scale.exp().clamp(max=100) * img @ cap_txt.T  # [image, text]
        t_img = compat.T / compat.T.sum(1, keepdim=True)  # image -> the captions that describe it
        t_txt = compat / compat.sum(1, keepdim=True)  # caption -> the images it describes
        clip_loss = 0.5 * (-(t_img * logits.log_softmax(1)).sum(1).mean() - (t_txt * logits.T.log_softmax(1)).sum(1).mean())
        img_dir = img[1::2] - img[0::2]
        dir_loss = (1 - F.cosine_similarity(img_dir, tb - ta, dim=-1)).mean()
        loss = clip_loss + args.dir_weight * dir_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(clip=f"{clip_loss.item():.3f}", dir=f"{dir_loss.item():.3f}", T=f"{model.logit_scale.exp().item():.1f}")
        if (step + 1) % 25 == 0 or step + 1 == args.steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step + 1},
                       ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)
    logger.info("trained %d steps in %.0f s", args.steps - start, time.time() - t0)

    save_shapes_clip(model.eval(), cfg, tok, args.out,
                     extra={"trained_by": "scripts/train_shapes_clip.py", "seed": args.seed, "steps": args.steps,
                            "pairs": args.pairs, "lr": args.lr, "dir_weight": args.dir_weight,
                            "shape_mention": args.shape_mention, "jitter": args.jitter,
                            "patch_size": args.patch_size,
                            "command": "python scripts/train_shapes_clip.py " + " ".join(sys.argv[1:])})
    clip = load_shapes_clip(path=args.out)
    logger.info("%s", measure_shapes_clip(clip, n=args.eval_n))


if __name__ == "__main__":
    main()
