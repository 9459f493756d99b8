"""Check nada's generator against the reference implementations, outside the test suite.

Builds random generators with NVIDIA's stylegan2-ada-pytorch and rosinality's stylegan2-pytorch
(from checkouts you pass in; nothing of theirs is copied into nada), saves them in their own
formats (a real NVIDIA network pickle and a rosinality ``.pt``), loads those files with
``nada.checkpoints.load_generator`` and compares images for the same z, truncation and const
noise (fp32, CPU). Also loads nada's rosinality export into rosinality's ``Generator``.

    python scripts/check_equivalence.py --nvidia-repo /tmp/ref/ada --rosinality-repo /tmp/ref/ros \
        --resolutions 256 1024

rosinality's ``op`` package compiles CUDA code at import; this script replaces
``torch.utils.cpp_extension.load`` by a stub first so its pure-PyTorch CPU paths are used.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Give zero-initialised biases and noise strengths random values so they are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or "noise" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def check_nvidia(repo: Path, res: int, tmp: Path, psi: float) -> dict[str, float]:
    sys.path.insert(0, str(repo))
    from training.networks import Generator as NvGenerator  # noqa: E402

    from nada.checkpoints import export_rosinality, load_generator

    torch.manual_seed(res)
    G = NvGenerator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                    mapping_kwargs=dict(num_layers=8),
                    synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))
    G.eval()
    _perturb(G, res)
    with torch.no_grad():
        G.mapping.w_avg.normal_(0, 0.5)
    path = tmp / f"nv{res}.pkl"
    with open(path, "wb") as f:  # NVIDIA's own persistence pickling (embeds their source)
        pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), f)
    loaded = load_generator(path)
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(7))
    out = {}
    with torch.no_grad():
        ref = G(z, None, truncation_psi=psi, noise_mode="const", force_fp32=True)
        ours = loaded.generator(z, truncation_psi=psi, noise_mode="const")
        out["nvidia const"] = (ref - ours).abs().max().item()
        ref0 = G(z, None, truncation_psi=1, noise_mode="none", force_fp32=True)
        out["nvidia no-noise"] = (ref0 - loaded.generator(z, noise_mode="none")).abs().max().item()
    out["_export"] = export_rosinality(loaded.generator, tmp / f"nv{res}_as_ros.pt")
    out["_ref_img"] = ref
    out["_z"] = z
    return out


def _import_rosinality(repo: Path):
    import torch.utils.cpp_extension as ce

    ce.load = lambda *a, **k: None  # op/ would compile CUDA at import; its CPU paths need nothing
    sys.path.insert(0, str(repo))
    import model as ros_model  # noqa: E402

    return ros_model


def check_rosinality(repo: Path, res: int, tmp: Path, psi: float, nv: dict | None) -> dict[str, float]:
    ros_model = _import_rosinality(repo)

    from nada.checkpoints import load_generator

    torch.manual_seed(res + 1)
    g = ros_model.Generator(res, 512, 8, channel_multiplier=2).eval()
    _perturb(g, res + 1)
    with torch.no_grad():
        latent_avg = g.mean_latent(4096)[0]
    path = tmp / f"ros{res}.pt"
    torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg}, path)
    loaded = load_generator(path)
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(8))
    out = {}
    with torch.no_grad():
        noise = [getattr(g.noises, f"noise_{i}") for i in range(g.num_layers)]
        ref, _ = g([z], truncation=psi, truncation_latent=latent_avg[None], noise=noise)
        ours = loaded.generator(z, truncation_psi=psi, noise_mode="const")
        out["rosinality const"] = (ref - ours).abs().max().item()
        if nv is not None:  # nada's export of the NVIDIA model, opened by rosinality's own class
            g2 = ros_model.Generator(res, 512, 8, channel_multiplier=2).eval()
            ck = torch.load(nv["_export"], weights_only=True)
            g2.load_state_dict(ck["g_ema"], strict=True)
            noise2 = [getattr(g2.noises, f"noise_{i}") for i in range(g2.num_layers)]
            img, _ = g2([nv["_z"]], truncation=psi, truncation_latent=ck["latent_avg"][None], noise=noise2)
            out["nvidia->nada->rosinality export"] = (img - nv["_ref_img"]).abs().max().item()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvidia-repo", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch")
    ap.add_argument("--rosinality-repo", type=Path, help="checkout of rosinality/stylegan2-pytorch")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--psi", type=float, default=0.7, help="truncation psi used in the comparison")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    worst = 0.0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for res in args.resolutions:
            t0 = time.perf_counter()
            nv = check_nvidia(args.nvidia_repo, res, tmp, args.psi) if args.nvidia_repo else None
            ros = check_rosinality(args.rosinality_repo, res, tmp, args.psi, nv) if args.rosinality_repo else {}
            for name, diff in {**(nv or {}), **ros}.items():
                if name.startswith("_"):
                    continue
                worst = max(worst, diff)
                print(f"{res:>5}px  {name:<34} max|diff| = {diff:.3e}")
            print(f"{res:>5}px  ({time.perf_counter() - t0:.0f} s)")
    ok = worst <= args.tol
    print(f"worst {worst:.3e} -> {'OK' if ok else 'FAIL'} (tol {args.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
