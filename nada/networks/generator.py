"""StyleGAN2 generator (config-f, skip ToRGB architecture): mapping network, synthesis network,
truncation and style mixing. Layers are addressed by name (``b8.conv0``) and style index."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import stylegan2_ops

from .config import GeneratorConfig
from .layers import (
    NOISE_MODES,
    FullyConnectedLayer,
    SynthesisLayer,
    ToRGBLayer,
    assert_shape,
    normalize_2nd_moment,
)

# On CPU, some maps are kept channels-last (NHWC) from 32 px on:
# - wide blocks (≥128 output channels): the CPU kernels (Winograd conv, fused epilogue) work on
#   NHWC, so NCHW there costs a layout copy per conv and per gradient; measured (docs/speed.md)
#   forward+backward at 256², batch 2: 2.14 -> 1.79 s;
# - small narrow maps (32-64 px, at most 64 channels: the shapes generator's): oneDNN's convs,
#   above all the transposed up-sampling ones, skip their layout reorders (a shapes-world step
#   10 % faster);
# - every map when no gradient is recorded (generating, the frozen twin).
# Narrow maps above 64 px (config-f's 512-1024 px, 32-64 channels) stay NCHW when
# gradients are recorded: NHWC made their forward+backward slower (1.13x NVIDIA's time against
# 0.9x).
CHANNELS_LAST_MIN_RES = 32
CHANNELS_LAST_MAX_RES = 64
CHANNELS_LAST_MAX_CHANNELS = 64
CHANNELS_LAST_WIDE = stylegan2_ops.conv.MIN_CHANNELS


@dataclass(frozen=True)
class LayerRef:
    """One styled layer of the synthesis network: its name, the module, and the index of the
    W+ vector that drives it."""

    name: str           # e.g. 'b8.conv0'
    module: nn.Module   # SynthesisLayer or ToRGBLayer
    w_index: int        # index into ws[:, w_index]


class MappingNetwork(nn.Module):
    """z → w: pixel norm, then ``mapping_layers`` equalised-lr lrelu layers (lr_mul 0.01)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.w_dim = cfg.w_dim
        self.num_ws = cfg.num_ws
        self.num_layers = cfg.mapping_layers
        self.w_avg_beta = cfg.w_avg_beta
        features = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            layer = FullyConnectedLayer(
                features[i], features[i + 1], activation="lrelu", lr_multiplier=cfg.mapping_lr_mul
            )
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(
        self,
        z: torch.Tensor,                        # [N, z_dim]
        truncation_psi: float = 1.0,            # 1 = no truncation, 0 = w_avg
        truncation_cutoff: int | None = None,   # truncate only ws[:, :cutoff]; None = all
        update_w_avg: bool = False,             # track the W average (training the generator only)
    ) -> torch.Tensor:
        """Returns ws [N, num_ws, w_dim] (the same w broadcast to every layer, then truncated)."""
        assert_shape(z, [None, self.z_dim], "z")
        x = normalize_2nd_moment(z.to(self.fc0.weight.dtype))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.truncate(ws, truncation_psi, truncation_cutoff)

    def truncate(self, ws: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """Pull ws towards ``w_avg``: ``w_avg + psi * (w - w_avg)`` for the first ``cutoff`` layers."""
        if psi == 1:
            return ws
        w_avg = self.w_avg.to(ws.dtype)
        if cutoff is None:
            return w_avg.lerp(ws, psi)
        ws = ws.clone()
        ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
        return ws

    @torch.no_grad()
    def estimate_w_avg(self, num_samples: int = 10000, generator: torch.Generator | None = None) -> torch.Tensor:
        """Set ``w_avg`` to the mean of w over ``num_samples`` z drawn from ``generator``."""
        dev = self.w_avg.device
        gdev = generator.device if generator is not None else dev
        z = torch.randn(num_samples, self.z_dim, generator=generator, device=gdev).to(dev)
        ws = torch.cat([self.forward(chunk)[:, 0] for chunk in z.split(1024)])
        self.w_avg.copy_(ws.mean(dim=0))
        return self.w_avg


@dataclass(frozen=True)
class SynthesisState:
    """Where a synthesis forward stands after block ``res``: the feature map ``x`` and the skip
    image ``img`` (what the next block reads)."""

    res: int
    x: torch.Tensor
    img: torch.Tensor


class SynthesisBlock(nn.Module):
    """One resolution: (up-sampling conv0), conv1, ToRGB added to the up-sampled skip image."""

    def __init__(self, cfg: GeneratorConfig, res: int):
        super().__init__()
        self.resolution = res
        out_ch = cfg.channels(res)
        self.in_channels = 0 if res == 4 else cfg.channels(res // 2)
        self.register_buffer(
            "resample_filter", stylegan2_ops.setup_filter(list(cfg.resample_filter)), persistent=False
        )
        common = dict(w_dim=cfg.w_dim, resolution=res, use_noise=cfg.use_noise, conv_clamp=cfg.conv_clamp)
        if res == 4:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4))
        else:
            self.conv0 = SynthesisLayer(
                self.in_channels, out_ch, up=2, resample_filter=cfg.resample_filter, **common
            )
        self.conv1 = SynthesisLayer(out_ch, out_ch, resample_filter=cfg.resample_filter, **common)
        self.torgb = ToRGBLayer(out_ch, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)

    def conv_names(self) -> list[str]:
        return ["conv1"] if self.resolution == 4 else ["conv0", "conv1"]


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] → image [N, C, res, res], roughly in [-1, 1]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.w_dim = cfg.w_dim
        self.img_resolution = cfg.img_resolution
        self.img_channels = cfg.img_channels
        self.num_ws = cfg.num_ws
        self.block_resolutions = cfg.block_resolutions
        for res in self.block_resolutions:
            setattr(self, f"b{res}", SynthesisBlock(cfg, res))

    def layers(self) -> list[LayerRef]:
        """Every styled layer in forward order: ``b4.conv1, b4.torgb, b8.conv0, b8.conv1, …``."""
        refs: list[LayerRef] = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            for conv in block.conv_names():
                refs.append(LayerRef(f"b{res}.{conv}", getattr(block, conv), w_idx))
                w_idx += 1
            # ToRGB of block r reads the style of the next block's first conv (NVIDIA/rosinality).
            refs.append(LayerRef(f"b{res}.torgb", block.torgb, w_idx))
        return refs

    def noise_shapes(self) -> dict[str, int]:
        """Layer name → noise resolution for every layer with noise input."""
        return {
            ref.name: ref.module.resolution
            for ref in self.layers()
            if isinstance(ref.module, SynthesisLayer) and ref.module.use_noise
        }

    def make_noise(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """One draw of per-layer noise {name: [batch, 1, res, res]}, to share between twins."""
        device = torch.device(device) if device is not None else self.b4.const.device
        out = {}
        for name, res in self.noise_shapes().items():
            gdev = generator.device if generator is not None else device
            out[name] = torch.randn([batch, 1, res, res], generator=generator, device=gdev).to(device)
        return out

    def forward(
        self,
        ws: torch.Tensor,                               # [N, num_ws, w_dim]
        noise_mode: str = "const",                      # random | const | none
        noise: dict[str, torch.Tensor] | None = None,   # from make_noise; overrides noise_mode
        generator: torch.Generator | None = None,       # RNG for noise_mode='random'
        start: SynthesisState | None = None,            # continue after this block (from forward_to)
    ) -> torch.Tensor:
        """The image; with ``start``, only the blocks above ``start.res`` run, on its tensors."""
        return self._run(ws, noise_mode, noise, generator, start, None).img

    def forward_to(
        self,
        ws: torch.Tensor,
        res: int,                                       # last block to run
        noise_mode: str = "const",
        noise: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> SynthesisState:
        """The feature map and skip image after block ``res``: the shared part of two synthesis
        networks whose blocks up to ``res`` are equal, for ``forward(..., start=state)``. The
        split matches one forward for a given ``noise`` dict or const noise; noise drawn from
        ``generator`` inside follows the blocks that run, so pass one ``noise`` draw instead."""
        if res not in self.block_resolutions:
            raise ValueError(f"no block at {res}px; blocks: {self.block_resolutions}")
        return self._run(ws, noise_mode, noise, generator, None, res)

    def _run(self, ws, noise_mode, noise, generator, start, stop) -> SynthesisState:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode={noise_mode!r}; use one of {NOISE_MODES}")
        assert_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        noise = noise or {}
        unknown = set(noise) - set(self.noise_shapes())
        if unknown:
            raise ValueError(f"noise for unknown layers {sorted(unknown)}")
        x = img = None
        if start is not None:
            x, img = start.x, start.img
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            if start is not None and res <= start.res:
                w_idx += len(block.conv_names())
                continue
            if res == 4:
                x = block.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            if x.device.type == "cpu":
                nhwc = CHANNELS_LAST_MIN_RES <= res and (
                    not torch.is_grad_enabled()
                    or block.conv1.weight.shape[0] >= CHANNELS_LAST_WIDE
                    or (res <= CHANNELS_LAST_MAX_RES and x.shape[1] <= CHANNELS_LAST_MAX_CHANNELS))
                x = x.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
            for conv in block.conv_names():
                layer = getattr(block, conv)
                x = layer(x, ws[:, w_idx], noise_mode, noise.get(f"b{res}.{conv}"), generator)
                w_idx += 1
            y = block.torgb(x, ws[:, w_idx])
            img = y if img is None else stylegan2_ops.upsample2d(img, block.resample_filter.float()) + y
            if res == stop:
                return SynthesisState(res, x, img)
        return SynthesisState(self.img_resolution, x, img)


class Generator(nn.Module):
    """StyleGAN2 generator: ``mapping`` (z → ws) then ``synthesis`` (ws → image)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.w_dim = cfg.w_dim
        self.img_resolution = cfg.img_resolution
        self.img_channels = cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg)

    def forward(
        self,
        z: torch.Tensor,                                # [N, z_dim]
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        noise: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,       # RNG for noise_mode='random'
    ) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, generator=generator)

    def layers(self) -> list[LayerRef]:
        return self.synthesis.layers()

    def make_noise(self, batch: int, generator: torch.Generator | None = None, device=None) -> dict[str, torch.Tensor]:
        return self.synthesis.make_noise(batch, generator, device)

    def mix(self, ws_a: torch.Tensor, ws_b: torch.Tensor, cutoff: int) -> torch.Tensor:
        """Style mixing: layers ``< cutoff`` take ``ws_a``, the rest ``ws_b``."""
        return style_mix(ws_a, ws_b, cutoff)

    def sample_ws(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        mixing_prob: float = 0.0,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """Random ws for ``batch`` images; with probability ``mixing_prob`` per sample a second z
        takes over from a random layer, as in StyleGAN2 training. All draws use ``generator``."""
        dev = self.mapping.w_avg.device
        gdev = generator.device if generator is not None else dev
        z = torch.randn(batch, self.z_dim, generator=generator, device=gdev).to(dev)
        ws = self.mapping(z, truncation_psi, truncation_cutoff)
        if mixing_prob <= 0:
            return ws
        z2 = torch.randn(batch, self.z_dim, generator=generator, device=gdev).to(dev)
        ws2 = self.mapping(z2, truncation_psi, truncation_cutoff)
        cut = torch.randint(1, self.num_ws, (batch,), generator=generator, device=gdev).to(dev)
        mix = torch.rand(batch, generator=generator, device=gdev).to(dev) < mixing_prob
        cut = torch.where(mix, cut, torch.full_like(cut, self.num_ws))
        take_a = torch.arange(self.num_ws, device=dev)[None, :] < cut[:, None]  # [N, num_ws]
        return torch.where(take_a[:, :, None], ws, ws2)


def style_mix(ws_a: torch.Tensor, ws_b: torch.Tensor, cutoff: int) -> torch.Tensor:
    """ws whose layers ``[0, cutoff)`` come from ``ws_a`` and ``[cutoff, num_ws)`` from ``ws_b``."""
    if ws_a.shape != ws_b.shape:
        raise ValueError(f"style_mix: shapes differ {list(ws_a.shape)} vs {list(ws_b.shape)}")
    num_ws = ws_a.shape[1]
    if not 0 <= cutoff <= num_ws:
        raise ValueError(f"style_mix: cutoff={cutoff} outside [0, {num_ws}]")
    return torch.cat([ws_a[:, :cutoff], ws_b[:, cutoff:]], dim=1)
