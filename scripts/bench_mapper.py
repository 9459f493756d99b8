"""Time latent-mapper training steps: the shapes world (real shipped models), and a full-size
1024² config-f generator with a ViT-B-32 (random weights, no download), with peak memory.

A step = the edited images' generator forward + CLIP forward and backward to the mapper + Adam;
the unedited images' features are computed the first time a latent is drawn (first epoch) and
reused after, so both kinds of step are reported.

    python scripts/bench_mapper.py                      # shapes world, then 1024² on the CPU
    python scripts/bench_mapper.py --cases shapes --steps 60
    python scripts/bench_mapper.py --device cuda --cases shapes full
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _shapes(steps: int, device: str, threads: int) -> dict:
    import torch

    from nada.mapper import MapperConfig
    from nada.mapper.trainer import MapperTrainer, prepare_mapper

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = MapperConfig(out=str(Path(tmp) / "run"), target="blue", device=device, quiet=True,
                           num_latents=MapperConfig.__dataclass_fields__["batch"].default * max(1, steps // 4))  # 4 epochs: later ones cached
        prep = prepare_mapper(cfg)
        trainer = MapperTrainer(prep, Path(tmp))
        return _time_steps(trainer, steps, device, "shapes-64, shapes + shapes-fine CLIPs, batch %d" % cfg.batch)


def _full(steps: int, device: str, threads: int, batch: int) -> dict:
    import open_clip
    import torch

    from nada.guidance import ClipEncoder, imagenet_templates
    from nada.mapper import MapperConfig
    from nada.mapper.losses import MapperObjective
    from nada.mapper.trainer import MapperPrepared, MapperTrainer, sample_latents
    from nada.networks import Generator, GeneratorConfig

    torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.preset("config-f-1024")).eval().requires_grad_(False).to(dev)
    model = open_clip.create_model("ViT-B-32", pretrained=None).to(dev)
    pp = open_clip.get_model_preprocess_cfg(model)
    enc = ClipEncoder("ViT-B-32:random", model, open_clip.get_tokenizer("ViT-B-32"), pp["size"][0], pp["mean"],
                      pp["std"], imagenet_templates()[:4])
    cfg = MapperConfig(target="a face with glasses", batch=batch, clip=("ViT-B-32:random",), device=device)
    latents = sample_latents(G, batch * max(1, steps // 2), 0.7, torch.Generator().manual_seed(0))
    prep = MapperPrepared(cfg, dev, G, Path("random"), {}, MapperObjective([enc], [1.0], cfg.target), latents)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MapperTrainer(prep, Path(tmp))
        return _time_steps(trainer, steps, device, f"config-f 1024², ViT-B-32 (random weights), batch {batch}")


def _time_steps(trainer, steps: int, device: str, what: str) -> dict:
    import torch

    first, later = [], []
    epoch = -(-len(trainer.prep.latents) // trainer.cfg.batch)
    for i in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        (first if i < epoch else later).append(time.perf_counter() - t0)
    first = first[1:] or first  # drop the warm-up step
    out = {"case": what, "device": device, "threads": torch.get_num_threads(), "steps": steps,
           "first_epoch_s_per_step": statistics.median(first),
           "cached_s_per_step": statistics.median(later) if later else None,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if later:
        out["cached_steps_per_s"] = 1 / out["cached_s_per_step"]
    if device.startswith("cuda"):
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["shapes", "full"], choices=["shapes", "full"])
    p.add_argument("--steps", type=int, default=40, help="timed steps on the shapes world")
    p.add_argument("--full-steps", type=int, default=4, help="timed steps at 1024²")
    p.add_argument("--full-batch", type=int, default=2, help="batch at 1024² (StyleCLIP: 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # one case per process, so the peak memory is that case's
        res = (_shapes(args.steps, args.device, args.threads) if args.worker == "shapes"
               else _full(args.full_steps, args.device, args.threads, args.full_batch))
        print(json.dumps(res))
        return
    for case in args.cases:
        cmd = [sys.executable, __file__, "--worker", case, "--steps", str(args.steps), "--full-steps",
               str(args.full_steps), "--full-batch", str(args.full_batch), "--device", args.device,
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{case}: failed\n{out.stderr[-2000:]}")
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        cached = res.get("cached_s_per_step")
        print(f"{res['case']} on {res['device']} ({res['threads']} threads): first epoch "
              f"{res['first_epoch_s_per_step']:.3f} s/step, later epochs "
              f"{'n/a' if cached is None else f'{cached:.3f} s/step ({1 / cached:.2f} steps/s)'}, "
              f"peak RSS {res['peak_rss_gb']:.2f} GB"
              + (f", peak CUDA {res['peak_cuda_gb']:.2f} GB" if "peak_cuda_gb" in res else ""))


if __name__ == "__main__":
    main()
