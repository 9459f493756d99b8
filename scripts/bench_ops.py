"""Time the StyleGAN2 ops: nada's reference path vs a naive formulation (and vs CUDA on a GPU).

Cases are the ones a StyleGAN2 generator/discriminator runs, at feature-map sizes of a 1024²
config-f network: up=2 and down=2 with the [1,3,3,1] filter, the 4×4 blur (up=1) that follows
a stride-2 transposed convolution, and a 3×3 blur. The naive formulation materialises the
zero-inserted tensor and filters at full resolution before subsampling, as NVIDIA's reference
does; pass ``--nvidia-repo PATH`` (a stylegan2-ada-pytorch checkout) to time NVIDIA's own
``_upfirdn2d_ref`` instead.

    python scripts/bench_ops.py [--repeats 3] [--threads 2] [--nvidia-repo /tmp/stylegan2-ada-pytorch]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import stylegan2_ops as ops
from stylegan2_ops.upfirdn2d import _parse_padding


def naive_upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Zero insertion + pad + full-resolution depthwise conv + slicing."""
    up = (up, up) if isinstance(up, int) else up
    down = (down, down) if isinstance(down, int) else down
    px0, px1, py0, py1 = _parse_padding(padding)
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up[0] - 1, 0, 0, 0, up[1] - 1]).reshape(n, c, h * up[1], w * up[0])
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).to(x.dtype)
    if f.ndim == 1:
        f = torch.outer(f, f)
    if not flip_filter:
        f = f.flip([0, 1])
    x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, :: down[1], :: down[0]]


def cases(device):
    """(label, x shape, kwargs) of the StyleGAN2 calls, feature maps of a 1024² config-f G."""
    f4 = ops.setup_filter([1, 3, 3, 1], device=device)
    f3 = ops.setup_filter([1, 2, 1], device=device)
    out = []
    for res, ch in ((128, 512), (256, 256), (512, 128)):
        # up=2 as upsample2d pads it; the blur after a stride-2 transposed conv (size 2r+1 -> 2r)
        out.append((f"up2   {ch}x{res}²", (2, ch, res, res), dict(f=f4, up=2, padding=[2, 1, 2, 1], gain=4)))
        out.append((f"down2 {ch}x{res}²", (2, ch, res, res), dict(f=f4, down=2, padding=[1, 1, 1, 1])))
        out.append((f"blur4 {ch}x{res}²", (2, ch, res + 1, res + 1), dict(f=f4, padding=[1, 1, 1, 1], gain=4)))
        out.append((f"blur3 {ch}x{res}²", (2, ch, res, res), dict(f=f3, padding=1)))
    return out


def timeit(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--nvidia-repo", default=None, help="stylegan2-ada-pytorch checkout to time its _upfirdn2d_ref")
    p.add_argument("--cuda-only", action="store_true", help="skip the CPU table (on a GPU machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cuda_only:
        return _cuda_table(args.repeats)
    other, other_name = naive_upfirdn2d, "naive"
    if args.nvidia_repo:
        sys.path.insert(0, args.nvidia_repo)
        from torch_utils.ops import upfirdn2d as nv  # noqa: E402  (outside this repo, not shipped)

        other, other_name = nv._upfirdn2d_ref, "nvidia_ref"
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    print(f"{'case':<22} {'ref fwd':>9} {other_name + ' fwd':>15} {'ratio':>6}   {'ref f+b':>9} {other_name + ' f+b':>15} {'ratio':>6}")
    tot = {"rf": 0.0, "of": 0.0, "rb": 0.0, "ob": 0.0}
    for label, shape, kw in cases(torch.device("cpu")):
        x = torch.randn(shape)
        xg = x.clone().requires_grad_(True)

        def fwd(fn):
            return lambda: fn(x, **kw)

        def fwd_bwd(fn):
            def run():
                y = fn(xg, **kw)
                y.backward(torch.ones_like(y))
                xg.grad = None
            return run

        with torch.no_grad():
            rf = timeit(fwd(lambda t, **k: ops.upfirdn2d(t, impl="ref", **k)), args.repeats)
            of = timeit(fwd(other), args.repeats)
        rb = timeit(fwd_bwd(lambda t, **k: ops.upfirdn2d(t, impl="ref", **k)), args.repeats)
        ob = timeit(fwd_bwd(other), args.repeats)
        for k, v in zip(("rf", "of", "rb", "ob"), (rf, of, rb, ob)):
            tot[k] += v
        print(f"{label:<22} {rf * 1e3:8.1f}ms {of * 1e3:13.1f}ms {of / rf:6.2f}   {rb * 1e3:8.1f}ms {ob * 1e3:13.1f}ms {ob / rb:6.2f}")
    print(f"{'total':<22} {tot['rf'] * 1e3:8.1f}ms {tot['of'] * 1e3:13.1f}ms {tot['of'] / tot['rf']:6.2f}   "
          f"{tot['rb'] * 1e3:8.1f}ms {tot['ob'] * 1e3:13.1f}ms {tot['ob'] / tot['rb']:6.2f}")
    return _cuda_table(args.repeats)


def _cuda_table(repeats: int) -> int:
    """CUDA kernels vs the reference path on the first GPU (nothing without one)."""
    if torch.cuda.is_available():
        print("\nCUDA kernels vs reference on", torch.cuda.get_device_name(0))
        dev = torch.device("cuda")
        for label, shape, kw in cases(dev):
            x = torch.randn(shape, device=dev)
            with torch.no_grad():
                tc = timeit(lambda: ops.upfirdn2d(x, impl="cuda", **kw), repeats)
                tr = timeit(lambda: ops.upfirdn2d(x, impl="ref", **kw), repeats)
            print(f"{label:<22} cuda {tc * 1e3:8.3f}ms  ref {tr * 1e3:8.3f}ms  ratio {tr / tc:6.2f}")
        for res, ch in ((128, 512), (256, 256), (512, 128)):  # bias + lrelu after each conv, fwd+bwd
            x = torch.randn(2, ch, res, res, device=dev, requires_grad=True)
            b = torch.randn(ch, device=dev, requires_grad=True)

            def run(impl):
                y = ops.bias_act(x, b, act="lrelu", clamp=256.0, impl=impl)
                y.backward(torch.ones_like(y))
                x.grad = b.grad = None
            tc, tr = timeit(lambda: run("cuda"), repeats), timeit(lambda: run("ref"), repeats)
            print(f"{f'bias_act f+b {ch}x{res}²':<22} cuda {tc * 1e3:8.3f}ms  ref {tr * 1e3:8.3f}ms  ratio {tr / tc:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
