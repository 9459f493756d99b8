"""Typed settings of an inversion (``nada invert``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError
from .losses import LOSS_KINDS


@dataclass(frozen=True)
class InvertConfig:
    """Optimisation-based projection into W+ (or W), after NVIDIA's stylegan2-ada projector.

    Defaults measured on the shapes world with ``scripts/measure_invert.py`` (docs/invert.md):
    W+ and 200 steps, because W inversions of hearts turn into squares through the sketch run
    (shape kept 0.83 against W+'s 0.94); NVIDIA's own are W, 1000 steps, lr 0.1, LPIPS."""

    steps: int = 200                    # optimisation steps (shapes world: 100 W+ keeps 0.91 of shapes in sketch, 200 0.94)
    lr: float = 0.1                     # peak Adam learning rate (NVIDIA: 0.1; 0.2 measured no better)
    wplus: bool = True                  # optimise one w per style layer (W+); False: one w for all (W, NVIDIA's)
    loss: str = "auto"                  # auto (LPIPS if its weights are cached, else pixel) | lpips | pixel
    clip_weight: float = 0.0            # weight of a CLIP image-feature term (needs a CLIP encoder)
    optimize_noise: bool = True         # optimise the per-layer noise maps too (regularised)
    noise_reg: float = 1e5              # weight of the noise auto-correlation penalty (NVIDIA: 1e5)
    initial_noise_factor: float = 0.05  # w jitter at step 0, in units of the W standard deviation
    noise_ramp: float = 0.75            # share of the steps over which the w jitter decays to 0
    lr_rampup: float = 0.05             # share of the steps of the lr warm-up
    lr_rampdown: float = 0.25           # share of the steps of the final cosine lr decay
    w_avg_samples: int = 10000          # z samples for w_avg and the W standard deviation
    batch: int | None = None            # images optimised together (independent); None: 16 up to 256 px, else 1
    seed: int = 0                       # seeds the w statistics, the jitter and the initial noise maps

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps={self.steps!r} must be a positive integer")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr!r} must be > 0")
        if self.loss not in LOSS_KINDS:
            raise ConfigError(f"unknown loss {self.loss!r}", f"use one of {', '.join(LOSS_KINDS)}")
        for key in ("clip_weight", "noise_reg", "initial_noise_factor"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)!r} must be >= 0")
        for key in ("noise_ramp", "lr_rampup", "lr_rampdown"):
            if not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"{key}={getattr(self, key)!r} must be in (0, 1]")
        for key in ("batch", "w_avg_samples"):
            value = getattr(self, key)
            if (value is not None or key != "batch") and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key}={value!r} must be a positive integer")

    def batch_for(self, resolution: int) -> int:
        """The batch at a generator resolution: ``batch``, else 16 up to 256 px and 1 above (a
        1024² backward pass holds several GB)."""
        return self.batch if self.batch is not None else (16 if resolution <= 256 else 1)

    def replace(self, **changes) -> InvertConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
