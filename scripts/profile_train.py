"""Where the time of one ``nada train`` iteration goes, on the embedded default (shapes world).

Runs the trainer's own step as separate timed phases (medians over ``--steps`` after a warm-up):
the twins' shared lower blocks, the frozen and the trainable twin's own blocks, each CLIP's
encodings of the frozen images (no grad) and of the adapted ones, the losses, the backward
pass split at the images (CLIP's part, then the generator's), the optimiser step, and the rest
of a real ``Trainer.step`` (sampling latents, records: the run's own bookkeeping).

    .venv/bin/python scripts/profile_train.py --steps 20
    .venv/bin/python scripts/profile_train.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--target", default="sketch")
    ap.add_argument("--threads", type=int, default=None, help="default: nada's automatic choice")
    args = ap.parse_args()

    from nada import cpu

    plan = cpu.configure(args.threads)
    import torch

    from nada.adapt import TrainConfig, rundir
    from nada.adapt.layers import set_trainable
    from nada.adapt.trainer import Trainer, prepare

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(out=str(Path(tmp) / "run"), target=args.target, quiet=True, evaluate=False)
        prep = prepare(cfg)
        tr = Trainer(prep, rundir.create_run_dir(prep.cfg))
        cfg, twin, obj = prep.cfg, tr.twin, tr.objective
        names = ["latents and noise", "shared blocks", "frozen twin", "trainable twin"]
        names += [f"CLIP {s}: frozen images" for s in cfg.clip] + [f"CLIP {s}: adapted images" for s in cfg.clip]
        names += ["losses", "backward: CLIP", "backward: generator", "optimiser", "step bookkeeping", "whole step"]
        times: dict[str, list[float]] = {n: [] for n in names}
        for i in range(args.steps + 3):
            t = {}
            t0 = time.perf_counter()
            sel, _ = tr.choose_layers()
            set_trainable(twin.trainable, tr.layers, sel.names)
            ws = twin.sample_ws(cfg.batch, tr.rng, cfg.mixing, cfg.truncation)
            noise = twin.make_noise(cfg.batch, tr.rng) if cfg.noise_mode == "random" else None
            t1 = time.perf_counter()
            t["latents and noise"] = t1 - t0
            with torch.no_grad():
                state = twin.frozen.forward_to(ws, tr.shared_res, noise=noise) if tr.shared_res else None
            t["shared blocks"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            with torch.no_grad():
                frozen = twin.frozen(ws, noise=noise, start=state)
            t["frozen twin"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            adapted = twin.trainable(ws, noise=noise, start=state)
            t["trainable twin"] = time.perf_counter() - t1
            feats = []
            for spec, enc in zip(cfg.clip, obj.encoders):
                t1 = time.perf_counter()
                with torch.no_grad():
                    f0 = enc.encode_image(frozen)
                t[f"CLIP {spec}: frozen images"] = time.perf_counter() - t1
                feats.append(f0)
            for spec, enc in zip(cfg.clip, obj.encoders):
                t1 = time.perf_counter()
                enc.encode_image(adapted)  # timed alone; the losses below encode again inside
                t[f"CLIP {spec}: adapted images"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            terms = obj.losses(frozen, adapted, tr.weights, rng=tr.rng)
            loss = sum(tr.weights[n] * v for n, v in terms.items())
            enc_s = sum(t[f"CLIP {s}: frozen images"] + t[f"CLIP {s}: adapted images"] for s in cfg.clip)
            t["losses"] = max(0.0, time.perf_counter() - t1 - enc_s)
            reached = {}
            adapted.register_hook(lambda g: reached.setdefault("t", time.perf_counter()) and None)
            tr.opt.zero_grad(set_to_none=True)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            t["backward: CLIP"] = reached.get("t", t2) - t1
            t["backward: generator"] = t2 - reached.get("t", t2)
            t1 = time.perf_counter()
            tr.opt.step()
            t["optimiser"] = time.perf_counter() - t1
            twin.trainable.requires_grad_(False)
            t1 = time.perf_counter()
            tr.step()  # the real step, for the whole and, by difference, the bookkeeping
            t["whole step"] = time.perf_counter() - t1
            if i >= 3:
                for k, v in t.items():
                    times[k].append(v)
        med = {k: statistics.median(v) * 1000 for k, v in times.items() if v}
        parts = sum(v for k, v in med.items() if k not in ("whole step", "step bookkeeping"))
        med["step bookkeeping"] = max(0.0, med["whole step"] - parts)
        print(f"one shapes-world iteration ({args.target}, batch {cfg.batch}, CLIPs {', '.join(cfg.clip)}, "
              f"layers {cfg.layers}); {plan.describe()}")
        print(f"{'phase':34s} {'ms':>8s} {'share':>7s}")
        for k in names:
            print(f"{k:34s} {med[k]:8.1f} {med[k] / med['whole step'] * 100:6.1f}%")
        print("(phases are medians of separate timings; the adapted images are encoded once more inside the "
              "losses, which the 'losses' row leaves out)")


if __name__ == "__main__":
    main()
