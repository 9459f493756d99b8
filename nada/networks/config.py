"""The StyleGAN2 generator's architecture as a typed, frozen config with named presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, reject_unknown_keys


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that fixes a generator's parameter shapes and forward pass.

    Channels follow NVIDIA's rule ``min(channel_base // res, channel_max)``; rosinality's
    ``channel_multiplier`` m is the same rule with ``channel_base = 16384 * m`` and
    ``channel_max = 512`` (see :meth:`from_channel_multiplier`).
    """

    img_resolution: int = 1024          # output side in pixels, a power of two in [8, 2048]
    z_dim: int = 512                    # input latent (Z) size
    w_dim: int = 512                    # intermediate latent (W) size, also the style size
    mapping_layers: int = 8             # fully connected layers in the mapping network
    mapping_lr_mul: float = 0.01        # equalised learning-rate multiplier of the mapping layers
    w_avg_beta: float = 0.995           # decay of the tracked W average (used when asked to track)
    channel_base: int = 32768           # channels at res r are min(channel_base // r, channel_max)
    channel_max: int = 512              # upper bound on channels of any layer
    img_channels: int = 3               # colour channels of the output image
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)  # low-pass FIR filter for up-sampling
    conv_clamp: float | None = None     # clamp conv outputs to +-X (NVIDIA fp16 models use 256)
    use_noise: bool = True              # per-layer noise injection
    name: str = field(default="custom", compare=False)  # preset name, for display only

    def __post_init__(self) -> None:
        r = self.img_resolution
        if not isinstance(r, int) or r < 8 or r > 2048 or r & (r - 1):
            raise ConfigError(f"img_resolution={r!r} is not supported", "use a power of two from 8 to 2048")
        for key in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "img_channels"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        if not self.mapping_lr_mul > 0:
            raise ConfigError(f"mapping_lr_mul={self.mapping_lr_mul!r} must be > 0")
        if not 0 <= self.w_avg_beta <= 1:
            raise ConfigError(f"w_avg_beta={self.w_avg_beta!r} must be in [0, 1]")
        object.__setattr__(self, "resample_filter", tuple(int(v) for v in self.resample_filter))
        if min(self.channels(res) for res in self.block_resolutions) < 1:
            raise ConfigError(
                f"channel_base={self.channel_base} gives zero channels at {r}px", "raise channel_base"
            )

    # --- derived quantities -------------------------------------------------------------
    @property
    def log2_resolution(self) -> int:
        return int(math.log2(self.img_resolution))

    @property
    def block_resolutions(self) -> list[int]:
        """Resolutions of the synthesis blocks, 4 … img_resolution."""
        return [2**i for i in range(2, self.log2_resolution + 1)]

    @property
    def num_ws(self) -> int:
        """Number of style vectors: 2·log2(res) − 2 (conv layers + the last ToRGB)."""
        return 2 * self.log2_resolution - 2

    def channels(self, res: int) -> int:
        """Feature channels of the block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    @property
    def channel_multiplier(self) -> int | None:
        """rosinality's channel multiplier, or None when the channels don't follow its rule."""
        if self.channel_max != 512 or self.channel_base % 16384:
            return None
        return self.channel_base // 16384

    # --- construction -----------------------------------------------------------------
    @staticmethod
    def from_channel_multiplier(img_resolution: int, channel_multiplier: int = 2, **kw: Any) -> "GeneratorConfig":
        """rosinality's parametrisation: ``Generator(size, style_dim, n_mlp, channel_multiplier)``."""
        return GeneratorConfig(
            img_resolution=img_resolution, channel_base=16384 * channel_multiplier, channel_max=512, **kw
        )

    @staticmethod
    def preset(name: str) -> "GeneratorConfig":
        """A named architecture: ``ffhq-1024``/``config-f-1024``, ``512``, ``256``, ``shapes-64``."""
        key = name.lower()
        if key not in PRESETS:
            raise ConfigError(f"unknown generator preset {name!r}", f"choose one of {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[key], name=key)

    def replace(self, **changes: Any) -> "GeneratorConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "GeneratorConfig":
        reject_unknown_keys(GeneratorConfig, d, "generator config keys")
        d = dict(d)
        if "resample_filter" in d:
            d["resample_filter"] = tuple(d["resample_filter"])
        return GeneratorConfig(**d)


# Official StyleGAN2 config-f (FFHQ 1024, also AFHQ/LSUN at lower resolutions): channel_base 32768
# (= rosinality channel_multiplier 2), channel_max 512, 8 mapping layers, 512-d z and w.
_CONFIG_F_1024 = GeneratorConfig(img_resolution=1024)

PRESETS: dict[str, GeneratorConfig] = {
    "config-f-1024": _CONFIG_F_1024,
    "ffhq-1024": _CONFIG_F_1024,
    "512": GeneratorConfig(img_resolution=512),
    "256": GeneratorConfig(img_resolution=256),
    # The embedded shapes world: 64x64, small enough to train and adapt on a laptop CPU.
    "shapes-64": GeneratorConfig(
        img_resolution=64,
        z_dim=128,
        w_dim=128,
        mapping_layers=4,
        channel_base=2048,              # 64 channels up to 32px, 32 at 64px
        channel_max=64,
    ),
}
