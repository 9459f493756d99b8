"""Time nada's generator on CPU: forward (no grad) and forward+backward, with peak memory.

Each case runs in its own process so the peak RSS belongs to that case alone.

    python scripts/bench_generator.py                       # 256 and config-f 1024, batch 2
    python scripts/bench_generator.py --presets shapes-64 --batch 8 --repeats 10
    python scripts/bench_generator.py --nvidia-repo /tmp/stylegan2-ada-pytorch --presets 256 --repeats 5

With ``--nvidia-repo`` (a stylegan2-ada-pytorch checkout, outside this repo) each case also
builds NVIDIA's generator with the same architecture and runs the two interleaved in one
process (nada, NVIDIA, nada, ...: both see the same machine load), with constant noise; the
table gives both medians and nada's time as a fraction of NVIDIA's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _nvidia_generator(repo: str, cfg):
    """NVIDIA's Generator with nada's config (no fp16 layers, no clamp: the fp32 CPU model)."""
    sys.path.insert(0, repo)
    from training.networks import Generator as NvGenerator

    return NvGenerator(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                       img_channels=cfg.img_channels, mapping_kwargs={"num_layers": cfg.mapping_layers},
                       synthesis_kwargs={"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                                         "num_fp16_res": 0, "conv_clamp": None}).eval()


def _worker(preset: str, mode: str, batch: int, repeats: int, threads: int, nvidia_repo: str | None) -> dict:
    from nada import cpu

    cpu.configure(threads)  # what the nada command runs with (process-wide: NVIDIA's model gets it too)
    import torch

    from nada.networks import Generator, GeneratorConfig

    torch.manual_seed(0)
    cfg = GeneratorConfig.preset(preset)
    models = {"nada": Generator(cfg).eval()}
    if nvidia_repo:
        models["nvidia"] = _nvidia_generator(nvidia_repo, cfg)
    z = torch.randn(batch, cfg.z_dim)
    times: dict[str, list[float]] = {k: [] for k in models}

    def run(name, G):
        if name == "nada":
            out = G(z, noise_mode="const")
        else:
            out = G(z, None, noise_mode="const")
        return out

    for i in range(repeats + 1):  # first round is warm-up
        for name, G in models.items():
            t = time.perf_counter()
            if mode == "forward":
                with torch.no_grad():
                    run(name, G)
            else:
                run(name, G).square().mean().backward()
                G.zero_grad(set_to_none=True)
            if i:
                times[name].append(time.perf_counter() - t)
    out = {
        "preset": preset,
        "mode": mode,
        "batch": batch,
        "median_s": statistics.median(times["nada"]),
        "min_s": min(times["nada"]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params_m": sum(p.numel() for p in models["nada"].parameters()) / 1e6,
        "threads": threads,
    }
    if nvidia_repo:
        out["nvidia_median_s"] = statistics.median(times["nvidia"])
        out["nvidia_params_m"] = sum(p.numel() for p in models["nvidia"].parameters()) / 1e6
        out["ratio"] = out["median_s"] / out["nvidia_median_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["256", "config-f-1024"])
    ap.add_argument("--modes", nargs="+", default=["forward", "forward+backward"],
                    choices=["forward", "forward+backward"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object per case")
    ap.add_argument("--nvidia-repo", default=None, help="stylegan2-ada-pytorch checkout to run beside nada's generator")
    ap.add_argument("--worker", nargs=2, metavar=("PRESET", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.batch, args.repeats, args.threads,
                                 args.nvidia_repo)))
        return 0
    if not args.json:
        print(f"{'preset':<14} {'mode':<17} {'batch':>5} {'median s':>9} {'min s':>8} {'peak RSS MiB':>13} {'params M':>9}")
    for preset in args.presets:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--worker", preset, mode, "--batch", str(args.batch),
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            if args.nvidia_repo:
                cmd += ["--nvidia-repo", args.nvidia_repo]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"{preset} {mode}: failed\n{res.stderr[-2000:]}", file=sys.stderr)
                return 1
            r = json.loads(res.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(r))
            else:
                nv = (f"   NVIDIA {r['nvidia_median_s']:.3f} s ({r['nvidia_params_m']:.2f} M params): "
                      f"nada/NVIDIA {r['ratio']:.2f}") if "ratio" in r else ""
                print(f"{preset:<14} {mode:<17} {r['batch']:>5} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
                      f"{r['peak_rss_mib']:>13.0f} {r['params_m']:>9.2f}{nv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
