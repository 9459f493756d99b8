"""Benchmark ``nada train``.

  shapes   : s/iter and total for N iterations on the embedded default (shapes world)
  fullsize : per-iteration time at 256² with a random config-f generator and a random ViT-B-32
  search   : the layer search with W+ gradients only vs. with weight gradients too (official)
  adapters : s/iter of --adapter full, stylespace and modulation on the shapes world (shipped
             defaults), the three alternating in --repeats rounds of --iters each
  share    : shapes-default steps with the twins' common lower blocks run once vs. twice,
             alternating blocks of 10 steps in one process (so both see the same machine load)

    .venv/bin/python scripts/bench_train.py shapes --iters 300
    .venv/bin/python scripts/bench_train.py fullsize --iters 2
    .venv/bin/python scripts/bench_train.py search --res 256 --repeats 2
    .venv/bin/python scripts/bench_train.py share --repeats 6
    .venv/bin/python scripts/bench_train.py adapters --iters 40 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nada.adapt import TrainConfig, TwinGenerator, select_layers, train
from nada.adapt.layers import candidate_indices
from nada.adapt.objective import ClipObjective
from nada.checkpoints import save_generator
from nada.networks import Generator, GeneratorConfig


class RandomOpenClip:
    """A random-weight open_clip model behind the ClipEncoder calls the trainer makes
    (bench only: no download; resize to the model's input, normalise with CLIP's mean/std)."""

    def __init__(self, name: str = "ViT-B-32", device: str = "cpu"):
        import open_clip

        torch.manual_seed(0)
        self.model = open_clip.create_model(name, pretrained=None).to(device).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(name)
        self.size = self.model.visual.image_size
        self.size = self.size[0] if isinstance(self.size, tuple) else self.size
        self.mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)

    def encode_image(self, img):
        x = F.interpolate((img + 1) / 2, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.model.encode_image((x - self.mean) / self.std).float()

    def encode_text(self, texts):
        with torch.no_grad():
            return F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.mean.device)).float(), dim=-1)

    def unknown_words(self, text):
        return []


def bench_shapes(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(out=str(Path(tmp) / "run"), target=args.target, iters=args.iters, quiet=True,
                          evaluate=False, device=args.device)
        t0 = time.perf_counter()
        result = train(cfg)
        total = time.perf_counter() - t0
    times = [r["time_s"] for r in result.history]
    search = [r["search_s"] for r in result.history]
    lr = f"lr {cfg.lr} → {cfg.lr_at(cfg.iters - 1):.3g}"
    print(f"shapes world, {args.iters} iterations ({args.target}, batch {cfg.batch}, {lr}): "
          f"total {total:.1f} s incl. loading/saving, "
          f"loop {result.seconds:.1f} s, {statistics.median(times):.3f} s/iter median "
          f"(layer search {statistics.median(search):.3f} s)")


def _fullsize_setup(res: int, device: str):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(img_resolution=res)).to(device).eval()
    enc = RandomOpenClip("ViT-B-32", device)
    return G, ClipObjective([enc], [1.0], "photo", "sketch")


def bench_fullsize(args) -> None:
    G, obj = _fullsize_setup(args.res, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.safetensors"
        save_generator(G, path)
        cfg = TrainConfig(out=str(Path(tmp) / "run"), generator=str(path), clip=("ViT-B-32",), target="sketch",
                          iters=args.iters, quiet=True, sample_every=0, save_every=0, sample_seeds="0",
                          auto_layer_k=args.k, auto_layer_batch=args.search_batch, device=args.device)
        result = train(cfg, obj)
    for r in result.history:
        print(f"iter {r['iter']}: {r['time_s']:.2f} s (layer search {r['search_s']:.2f} s)")
    print(f"{args.res}² config-f + ViT-B-32 (random), batch 2, search batch {args.search_batch}, k={args.k}, "
          f"{args.device}: {statistics.median(r['time_s'] for r in result.history):.2f} s/iter median")


def bench_search(args) -> None:
    G, obj = _fullsize_setup(args.res, args.device)
    twin = TwinGenerator(G)
    ws = twin.sample_ws(args.search_batch, torch.Generator().manual_seed(0))
    cands = candidate_indices(twin.layers())
    sync = torch.cuda.synchronize if ws.device.type == "cuda" else (lambda: None)

    def search(weight_grads: bool):
        return select_layers(twin.trainable, ws, obj.global_loss, args.k, iters=1, candidates=cands,
                             weight_grads=weight_grads)[0]

    for weight_grads in (False, True):  # untimed warm-up: kernel builds, cuDNN autotuning, allocator
        search(weight_grads)
    out = {}
    for weight_grads in (False, True):
        ts = []
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            idx = search(weight_grads)
            sync()
            ts.append(time.perf_counter() - t0)
        out[weight_grads] = (statistics.median(ts), idx)
    a, b = out[False][0], out[True][0]
    print(f"layer search at {args.res}², batch {args.search_batch}, 1 step: W+ grads only {a:.2f} s, "
          f"with weight grads {b:.2f} s, speed-up {b / a:.2f}x (same indices: {out[False][1] == out[True][1]})")


def bench_share(args) -> None:
    from nada.adapt import rundir
    from nada.adapt.trainer import Trainer, prepare

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(out=str(Path(tmp) / "run"), target=args.target, quiet=True, evaluate=False,
                          sample_every=0, save_every=0, device=args.device)
        prep = prepare(cfg)
        trainer = Trainer(prep, rundir.create_run_dir(prep.cfg))
        shared = trainer.shared_res
        sync = torch.cuda.synchronize if prep.device.type == "cuda" else (lambda: None)
        per_step = {True: [], False: []}
        for _ in range(args.repeats):
            for on in (True, False):
                trainer.shared_res = shared if on else None
                sync()
                t0 = time.perf_counter()
                for _ in range(10):
                    trainer.step()
                sync()
                per_step[on].append((time.perf_counter() - t0) / 10)
    a, b = statistics.median(per_step[True]), statistics.median(per_step[False])
    print(f"shapes default ({args.target}, batch {cfg.batch}): blocks up to {shared} px shared {a:.3f} s/iter, "
          f"run twice {b:.3f} s/iter (medians of {args.repeats} blocks of 10 steps), speed-up {b / a:.2f}x")


def bench_adapters(args) -> None:
    times: dict[str, list[float]] = {"full": [], "stylespace": [], "modulation": []}
    numbers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for adapter in times:
                cfg = TrainConfig(out=str(Path(tmp) / f"{adapter}{rep}"), target=args.target, iters=args.iters,
                                  adapter=adapter, quiet=True, evaluate=False, sample_every=0, save_every=0,
                                  device=args.device)
                result = train(cfg)
                times[adapter] += [r["time_s"] for r in result.history[2:]]  # first steps warm up
                numbers[adapter] = result.generator_path.stat().st_size
    base = statistics.median(times["full"])
    for adapter, ts in times.items():
        med = statistics.median(ts)
        print(f"{adapter:>10}: {med:.3f} s/iter median ({med / base:.2f}x full), output {numbers[adapter] / 1024:.1f} KiB"
              f" ({args.target}, {args.repeats} rounds of {args.iters} iterations, {args.device})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["shapes", "fullsize", "search", "share", "adapters"])
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--target", default="sketch")
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--search-batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    {"shapes": bench_shapes, "fullsize": bench_fullsize, "search": bench_search,
     "share": bench_share, "adapters": bench_adapters}[args.what](args)


if __name__ == "__main__":
    main()
