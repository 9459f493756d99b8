"""Optimisation-based projection of images into a generator's W / W+ space.

The schedule is NVIDIA's stylegan2-ada projector's, written here from its description: start at
``w_avg``; Adam on w (and on per-layer noise maps); a cosine learning-rate ramp up over the
first ``lr_rampup`` and down over the last ``lr_rampdown`` of the steps; a Gaussian jitter on w
that decays to zero over ``noise_ramp``; the noise maps penalised for spatial auto-correlation
at every octave and re-normalised to zero mean / unit variance after each step, so they cannot
carry the image. Images in one batch are optimised independently (every loss term is per image
and Adam is per element), so batching only changes the speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..networks import Generator
from .config import InvertConfig
from .losses import ReconstructionLoss, build_loss


@dataclass
class Projection:
    """What an inversion found, for ``N`` images."""

    ws: torch.Tensor                        # [N, num_ws, w_dim] (W results broadcast to every row)
    noise: dict[str, torch.Tensor]          # layer name -> [N, 1, r, r] noise maps used with ws
    images: torch.Tensor                    # [N, 3, H, W] reconstructions in [-1, 1]
    loss_name: str                          # which reconstruction loss was used
    metrics: list[dict] = field(default_factory=list)   # per image: pixel_mse, psnr_db, loss, ...
    seconds: float = 0.0                    # wall time of the whole projection
    steps: int = 0


@torch.no_grad()
def w_statistics(G: Generator, samples: int, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """``(w_avg [w_dim], w_std)`` over ``samples`` mapped z from ``generator``; w_std is the RMS
    distance to the mean (NVIDIA's scalar), the scale of the jitter."""
    dev = G.mapping.w_avg.device
    z = torch.randn(samples, G.z_dim, generator=generator).to(dev)
    w = torch.cat([G.mapping(chunk)[:, 0] for chunk in z.split(2048)])
    w_avg = w.mean(0)
    w_std = float((w - w_avg).square().sum(1).mean().sqrt())
    return w_avg, w_std


def noise_regularizer(noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per image [N]: sum over maps and octaves (down to 8 px) of the squared mean products of
    each map with itself shifted by one pixel along x and along y."""
    total = None
    for v in noise.values():
        x = v
        while True:
            term = (x * torch.roll(x, 1, dims=3)).mean(dim=(1, 2, 3)).square()
            term = term + (x * torch.roll(x, 1, dims=2)).mean(dim=(1, 2, 3)).square()
            total = term if total is None else total + term
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total


@torch.no_grad()
def normalize_noise_(noise: dict[str, torch.Tensor]) -> None:
    """Zero mean and unit variance per image and map, in place."""
    for v in noise.values():
        v.sub_(v.mean(dim=(1, 2, 3), keepdim=True))
        v.mul_(v.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt())


def learning_rate(cfg: InvertConfig, t: float) -> float:
    """The lr at progress ``t`` in [0, 1): cosine ramp-up, plateau, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return cfg.lr * ramp * min(1.0, t / cfg.lr_rampup)


def prepare_target(G: Generator, images: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, h, w] in [-1, 1] resized (area / bilinear) to the generator's size."""
    if images.ndim != 4 or images.shape[1] != G.img_channels:
        raise ConfigError(f"target images must be [N, {G.img_channels}, H, W], got {list(images.shape)}")
    r = G.img_resolution
    x = images.to(G.mapping.w_avg.device, torch.float32)
    if x.shape[-2:] != (r, r):
        mode = "area" if x.shape[-1] > r else "bilinear"
        x = F.interpolate(x, size=(r, r), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return x


def project(
    G: Generator,                           # frozen generator (eval, no grads on its weights)
    images: torch.Tensor,                   # [N, 3, H, W] targets in [-1, 1]
    cfg: InvertConfig | None = None,        # default InvertConfig()
    loss: ReconstructionLoss | None = None, # default: build_loss(cfg.loss) on G's device
    init_ws: torch.Tensor | None = None,    # [N, num_ws, w_dim] start (an encoder's); optimised in W+
    progress: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,  # (step done, total, mean loss)
    stop: Callable[[], bool] | None = None,  # polled before each step: True ends the optimisation there
) -> Projection:
    """Invert ``images`` into ``G``'s latent space; see the module docstring for the method.
    When ``stop()`` turns true, every image keeps the latent it has reached (later batches keep
    their start); ``Projection.steps`` is then the steps the first batch took."""
    from tqdm import tqdm

    cfg = cfg if cfg is not None else InvertConfig()
    start = time.perf_counter()
    target_all = prepare_target(G, images)
    n = target_all.shape[0]
    if init_ws is not None and tuple(init_ws.shape) != (n, G.num_ws, G.w_dim):
        raise ConfigError(f"init latents of shape {list(init_ws.shape)}, expected [{n}, {G.num_ws}, {G.w_dim}]")
    dev = target_all.device
    loss = loss if loss is not None else build_loss(cfg.loss, dev)
    rng = torch.Generator().manual_seed(cfg.seed)
    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, rng)
    wplus = cfg.wplus or init_ws is not None
    batch = cfg.batch_for(G.img_resolution)
    chunks = range(0, n, batch)
    total_steps = cfg.steps * len(chunks)
    bar = tqdm(total=total_steps, desc="nada invert", unit="step", disable=not progress)
    out_ws, out_noise, out_img, out_loss = [], [], [], []
    done = 0
    steps_taken = None
    for c0 in chunks:
        target = target_all[c0 : c0 + batch]
        b = target.shape[0]
        if init_ws is not None:
            w0 = init_ws[c0 : c0 + b].to(dev, torch.float32)
        else:
            w0 = w_avg[None, None].expand(b, G.num_ws if wplus else 1, -1)
        w_opt = w0.detach().clone().requires_grad_(True)
        noise = {k: v.requires_grad_(cfg.optimize_noise) for k, v in G.make_noise(b, rng, dev).items()}
        if cfg.optimize_noise:
            normalize_noise_(noise)
        params = [w_opt] + (list(noise.values()) if cfg.optimize_noise else [])
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
        noise_arg = noise if cfg.optimize_noise else None
        for step in range(cfg.steps):
            if stop is not None and stop():
                break
            t = step / cfg.steps
            jitter = w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, t)
            w = w_opt + torch.randn(w_opt.shape, generator=rng).to(dev) * jitter
            img = G.synthesis(w.expand(-1, G.num_ws, -1), noise_mode="const", noise=noise_arg)
            dist = loss(img, target)
            objective = dist
            if cfg.optimize_noise and cfg.noise_reg > 0:
                objective = objective + cfg.noise_reg * noise_regularizer(noise)
            opt.zero_grad(set_to_none=True)
            objective.sum().backward()
            opt.step()
            if cfg.optimize_noise:
                normalize_noise_(noise)
            done += 1
            bar.update(1)
            if step % 10 == 0 or step == cfg.steps - 1:
                bar.set_postfix(loss=f"{float(dist.detach().mean()):.4f}")
            if on_step is not None:
                on_step(done, total_steps, float(dist.detach().mean()))
        else:
            step = cfg.steps
        steps_taken = step if steps_taken is None else steps_taken
        with torch.no_grad():
            ws = w_opt.detach().expand(-1, G.num_ws, -1).clone()
            final = G.synthesis(ws, noise_mode="const", noise=noise_arg)
            out_loss.append(loss(final, target))
        out_ws.append(ws)
        out_img.append(final)
        out_noise.append({k: v.detach() for k, v in noise.items()} if cfg.optimize_noise else
                         {k: v.detach().expand(b, -1, -1, -1) for k, v in const_noise(G).items()})
    bar.close()
    ws = torch.cat(out_ws)
    recon = torch.cat(out_img)
    noise_all = {k: torch.cat([d[k] for d in out_noise]) for k in out_noise[0]}
    losses = torch.cat(out_loss)
    parts = {k: torch.cat([loss.parts(recon[i : i + batch], target_all[i : i + batch])[k] for i in chunks])
             for k in loss.names}
    metrics = [
        {**image_errors(recon[i : i + 1], target_all[i : i + 1]), "loss": float(losses[i]),
         "perceptual": float(parts["lpips-vgg16"][i]) if "lpips-vgg16" in parts else None,
         "terms": {k: float(v[i]) for k, v in parts.items()}}
        for i in range(n)
    ]
    return Projection(ws, noise_all, recon, loss.name, metrics, time.perf_counter() - start, steps_taken)


def const_noise(G: Generator) -> dict[str, torch.Tensor]:
    """The generator's stored noise buffers as a noise dict ([1, 1, r, r] each)."""
    out = {}
    for ref in G.synthesis.layers():
        buf = getattr(ref.module, "noise_const", None)
        if buf is not None and ref.name in G.synthesis.noise_shapes():
            out[ref.name] = buf.detach().reshape(1, 1, *buf.shape[-2:])
    return out


@torch.no_grad()
def image_errors(x: torch.Tensor, y: torch.Tensor) -> dict:
    """Pixel errors of one reconstruction ``x`` against its target ``y`` (both [-1, 1]): MSE in
    [-1, 1] units, mean absolute error in 0-255 levels and PSNR (peak-to-peak 2)."""
    mse = float((x - y).square().mean())
    return {
        "pixel_mse": mse,
        "pixel_mae_255": float((x - y).abs().mean() * 127.5),
        "psnr_db": float(10 * math.log10(4.0 / max(mse, 1e-12))),
    }
