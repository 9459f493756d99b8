"""rosinality/stylegan2-pytorch ``Generator`` state dicts ↔ nada's generator.

A rosinality checkpoint is a ``torch.save`` dict with ``g_ema`` (and, from training, ``g``,
``d``, optimiser states and ``args``); ``convert_weight.py`` also stores ``latent_avg`` [w_dim].
Key layout of ``g_ema`` for ``Generator(size, style_dim, n_mlp, channel_multiplier)``
(``L = log2(size)``, ``C(r)`` the channels at resolution r, k = 0 … L−3, block res r = 2^(k+3)):

====================================  ========================  ================================
rosinality key                        shape                     nada key (NVIDIA layout)
====================================  ========================  ================================
``style.{i}.weight`` / ``.bias``      [S, S] / [S], i=1…n_mlp   ``mapping.fc{i-1}.weight/bias``
``input.input``                       [1, C(4), 4, 4]           ``synthesis.b4.const`` [C, 4, 4]
``conv1.conv.weight``                 [1, C, C, 3, 3]           ``synthesis.b4.conv1.weight``
``conv1.conv.modulation.weight/bias`` [C, S] / [C]              ``synthesis.b4.conv1.affine.*``
``conv1.noise.weight``                [1]                       ``synthesis.b4.conv1.noise_strength`` []
``conv1.activate.bias``               [C]                       ``synthesis.b4.conv1.bias``
``to_rgb1.conv.weight``               [1, 3, C, 1, 1]           ``synthesis.b4.torgb.weight``
``to_rgb1.conv.modulation.*``         [C, S] / [C]              ``synthesis.b4.torgb.affine.*``
``to_rgb1.bias``                      [1, 3, 1, 1]              ``synthesis.b4.torgb.bias`` [3]
``convs.{2k}.*`` (upsample conv)      as conv1, + buffer        ``synthesis.b{r}.conv0.*``
``convs.{2k}.conv.blur.kernel``       [4, 4] buffer             (the fixed [1,3,3,1] filter ×4)
``convs.{2k+1}.*``                    as conv1                  ``synthesis.b{r}.conv1.*``
``to_rgbs.{k}.*``                     as to_rgb1                ``synthesis.b{r}.torgb.*``
``to_rgbs.{k}.upsample.kernel``       [4, 4] buffer             (the fixed filter ×4)
``noises.noise_{j}``                  [1, 1, R, R], j=0…2L−4    ``…conv{0,1}.noise_const`` [R, R]
====================================  ========================  ================================

Noise buffer j belongs to the j-th conv in forward order (0 = ``b4.conv1``). The arithmetic of
the two implementations is the same (rosinality scales conv weights by 1/sqrt(fan-in) before
demodulation; NVIDIA does not, which only moves the 1e-8 epsilon).
"""

from __future__ import annotations

import re

import torch

import stylegan2_ops

from ..networks import GeneratorConfig
from .errors import layout_error

_STYLE_RE = re.compile(r"^style\.(\d+)\.weight$")
_RGBS_RE = re.compile(r"^to_rgbs\.(\d+)\.conv\.weight$")


def _conv_pairs(ros: str, nada: str, *, noise: bool = True) -> list[tuple[str, str, str]]:
    """(rosinality key, nada key, kind) for one StyledConv; kind tells how shapes differ."""
    pairs = [
        (f"{ros}.conv.weight", f"{nada}.weight", "squeeze0"),
        (f"{ros}.conv.modulation.weight", f"{nada}.affine.weight", "same"),
        (f"{ros}.conv.modulation.bias", f"{nada}.affine.bias", "same"),
        (f"{ros}.activate.bias", f"{nada}.bias", "same"),
    ]
    if noise:
        pairs.append((f"{ros}.noise.weight", f"{nada}.noise_strength", "scalar"))
    return pairs


def _rgb_pairs(ros: str, nada: str) -> list[tuple[str, str, str]]:
    return [
        (f"{ros}.conv.weight", f"{nada}.weight", "squeeze0"),
        (f"{ros}.conv.modulation.weight", f"{nada}.affine.weight", "same"),
        (f"{ros}.conv.modulation.bias", f"{nada}.affine.bias", "same"),
        (f"{ros}.bias", f"{nada}.bias", "rgb_bias"),
    ]


def key_map(cfg: GeneratorConfig) -> list[tuple[str, str, str]]:
    """Every (rosinality key, nada key, kind) pair for a config; excludes the fixed blur kernels."""
    pairs: list[tuple[str, str, str]] = []
    for i in range(cfg.mapping_layers):
        pairs += [(f"style.{i + 1}.weight", f"mapping.fc{i}.weight", "same"),
                  (f"style.{i + 1}.bias", f"mapping.fc{i}.bias", "same")]
    pairs.append(("input.input", "synthesis.b4.const", "squeeze0"))
    pairs += _conv_pairs("conv1", "synthesis.b4.conv1", noise=cfg.use_noise)
    pairs += _rgb_pairs("to_rgb1", "synthesis.b4.torgb")
    if cfg.use_noise:
        pairs.append(("noises.noise_0", "synthesis.b4.conv1.noise_const", "noise"))
    for k, res in enumerate(cfg.block_resolutions[1:]):
        pairs += _conv_pairs(f"convs.{2 * k}", f"synthesis.b{res}.conv0", noise=cfg.use_noise)
        pairs += _conv_pairs(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", noise=cfg.use_noise)
        pairs += _rgb_pairs(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        if cfg.use_noise:
            pairs.append((f"noises.noise_{2 * k + 1}", f"synthesis.b{res}.conv0.noise_const", "noise"))
            pairs.append((f"noises.noise_{2 * k + 2}", f"synthesis.b{res}.conv1.noise_const", "noise"))
    return pairs


def blur_keys(cfg: GeneratorConfig) -> list[str]:
    n = len(cfg.block_resolutions) - 1
    return [f"convs.{2 * k}.conv.blur.kernel" for k in range(n)] + [f"to_rgbs.{k}.upsample.kernel" for k in range(n)]


def blur_kernel(cfg: GeneratorConfig) -> torch.Tensor:
    """rosinality's stored 2-D up-sampling kernel: normalised outer product × factor² (4)."""
    return stylegan2_ops.setup_filter(list(cfg.resample_filter)) * 4


def _to_ros(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "squeeze0":
        return t.unsqueeze(0)
    if kind == "scalar":
        return t.reshape(1)
    if kind == "rgb_bias":
        return t.reshape(1, -1, 1, 1)
    if kind == "noise":
        return t.reshape(1, 1, *t.shape)
    return t


def _from_ros(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "squeeze0":
        return t.squeeze(0)
    if kind == "scalar":
        return t.reshape(())
    if kind == "rgb_bias":
        return t.reshape(-1)
    if kind == "noise":
        return t.reshape(t.shape[-2:])
    return t


def export_state_dict(state: dict[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """nada state dict → rosinality ``g_ema`` state dict."""
    out = {ros: _to_ros(state[nada].detach().cpu().contiguous(), kind).clone() for ros, nada, kind in key_map(cfg)}
    kernel = blur_kernel(cfg)
    for key in blur_keys(cfg):
        out[key] = kernel.clone()
    return out


def infer_config(sd: dict[str, torch.Tensor], path: str) -> GeneratorConfig:
    """Architecture of a rosinality ``g_ema`` state dict, from its tensors alone."""
    styles = sorted(int(m.group(1)) for k in sd if (m := _STYLE_RE.match(k)))
    rgbs = sorted(int(m.group(1)) for k in sd if (m := _RGBS_RE.match(k)))
    if not styles or "input.input" not in sd or "conv1.conv.weight" not in sd:
        raise layout_error(path, "not a rosinality StyleGAN2 generator state dict",
                           missing=[k for k in ("style.1.weight", "input.input", "conv1.conv.weight") if k not in sd])
    if styles != list(range(1, len(styles) + 1)) or rgbs != list(range(len(rgbs))):
        raise layout_error(path, "mapping or ToRGB layers are not numbered consecutively")
    style_dim = sd["style.1.weight"].shape[1]
    resolution = 2 ** (len(rgbs) + 2)
    channels = {4: int(sd["input.input"].shape[1])}
    for k in range(len(rgbs)):
        key = f"convs.{2 * k}.conv.weight"
        if key not in sd:
            raise layout_error(path, "missing up-sampling conv", missing=[key])
        channels[2 ** (k + 3)] = int(sd[key].shape[1])
    base, cmax = channel_rule(channels)
    if base is None:
        raise layout_error(path, f"channel counts {channels} follow no min(base // res, max) rule")
    return GeneratorConfig(
        img_resolution=resolution,
        z_dim=int(style_dim),
        w_dim=int(style_dim),
        mapping_layers=len(styles),
        channel_base=base,
        channel_max=cmax,
    )


def channel_rule(channels: dict[int, int]) -> tuple[int | None, int]:
    """(channel_base, channel_max) reproducing ``channels`` {res: C}, or (None, max)."""
    cmax = max(channels.values())
    below = sorted(r for r, c in channels.items() if c < cmax)
    candidates = [channels[r] * r for r in below[:1]] or [cmax * max(channels)]
    if below:  # base // r == C(r) allows base in [C*r, C*r + r - 1]; prefer a multiple of 16384
        r = below[0]
        lo, hi = channels[r] * r, channels[r] * r + r - 1
        candidates = [b for b in range((lo + 16383) // 16384 * 16384, hi + 1, 16384)] + candidates
    else:
        candidates = [max(16384, cmax * max(channels))] + candidates
    for base in candidates:
        if all(min(base // r, cmax) == c for r, c in channels.items()):
            return base, cmax
    return None, cmax


def import_state_dict(sd: dict[str, torch.Tensor], cfg: GeneratorConfig, path: str) -> dict[str, torch.Tensor]:
    """rosinality ``g_ema`` → nada state dict (without ``mapping.w_avg``); strict."""
    pairs = key_map(cfg)
    expected = {ros for ros, _, _ in pairs} | set(blur_keys(cfg))
    missing = [k for k in (r for r, _, _ in pairs) if k not in sd] + [k for k in blur_keys(cfg) if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise layout_error(path, "rosinality key layout does not match the inferred architecture",
                           missing=missing, unexpected=unexpected)
    kernel = blur_kernel(cfg)
    bad_blur = [k for k in blur_keys(cfg) if sd[k].shape != kernel.shape or not torch.allclose(sd[k].float(), kernel)]
    if bad_blur:
        raise layout_error(path, "up-sampling kernels differ from the [1,3,3,1] filter", mismatched=bad_blur)
    return {nada: _from_ros(sd[ros], kind) for ros, nada, kind in pairs}
