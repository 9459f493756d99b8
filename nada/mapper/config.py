"""``MapperConfig``: every option of ``nada mapper train`` as one typed, frozen, validated record."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, reject_unknown_keys
from ..layer_groups import MAPPER_LEVELS
from .network import DEFAULT_STRENGTH

OPTIMIZERS = ("adam", "ranger")
LOSS_WEIGHTS = ("lambda_clip", "lambda_latent", "lambda_norm", "lambda_direction", "lambda_id")
RUN_KIND = "mapper"  # config.json's "kind": tells a mapper run from a `nada train` run


@dataclass(frozen=True)
class MapperConfig:
    """One latent-mapper run. Defaults marked StyleCLIP/NADA follow the original code; the
    schedule's defaults were measured on the shapes world (docs/mapper-experiments.md)."""

    # --- where ---------------------------------------------------------------------------
    out: str = "runs/mapper"                 # run directory
    overwrite: bool = False                  # replace an existing run directory
    resume: bool = False                     # continue the run in `out`
    # --- models --------------------------------------------------------------------------
    generator: str = "shapes"                # checkpoint, known name, `nada train` run directory or 'shapes'
    clip: tuple[str, ...] = ()               # CLIP specs; () = the generator's recorded ones, else the
                                             # shapes pair on the shapes world, else ViT-B-32 + ViT-B-16
    clip_weights: tuple[float, ...] = ()     # one weight per CLIP model; () = all 1
    init: str | None = None                  # start from this mapper file (fine-tune on another generator)
    identity: str | None = None              # ArcFace IR-SE50 weights for the identity loss (faces); None = off
    # --- what to learn -------------------------------------------------------------------
    target: str = ""                         # text of the edit, e.g. "blue", "a star", "with glasses"
    source: str | None = None                # text of the unedited images; only the directional loss uses it
    levels: tuple[str, ...] = MAPPER_LEVELS  # W+ levels that edit (StyleCLIP: all three)
    strength: float = DEFAULT_STRENGTH       # w' = w + strength · M(w) (StyleCLIP 0.1)
    # --- data ----------------------------------------------------------------------------
    latents: str | None = None               # safetensors file of W+ latents [N, num_ws, w_dim]; None = sample
    num_latents: int = 512                   # latents sampled from z when no file is given (shapes: as good
                                             # as 2048 and later epochs reuse the unedited features)
    truncation: float = 0.7                  # truncation psi of sampled latents (StyleCLIP 0.7)
    # --- schedule ------------------------------------------------------------------------
    steps: int = 800                         # optimiser steps (shapes world: "blue" 0.94 at 800, docs/mapper.md)
    batch: int = 8                           # latents per step
    optimizer: str = "adam"                  # adam, or ranger (StyleCLIP's; needs pytorch_optimizer)
    lr: float = 0.5                          # learning rate (StyleCLIP's 0.5; Adam at 0.05 moved 7%, at 1.0 was unstable)
    lr_final: float = 0.1                    # cosine-anneal the lr to this fraction of it by the last step (1 =
                                             # constant, StyleCLIP): at a constant lr the result wanders
                                             # (0.87-0.91 between steps 400 and 600), annealed it settles
    seed: int = 0                            # seed of the sampled latents and the epoch order
    # --- losses (weights) ----------------------------------------------------------------
    lambda_clip: float = 1.0                 # global CLIP loss of the edited image toward the target (StyleCLIP 1)
    lambda_latent: float = 0.8               # MSE between w' and w (StyleCLIP 0.8)
    lambda_norm: float = 0.1                 # CLIP embedding-norm loss, edited vs unedited. NADA uses 0.5;
                                             # on the shapes world that slows "blue" to 0.67 at 800 steps
                                             # (0.94 at 1,600); 0.1 reaches 0.91 by 600 (docs/mapper.md)
    lambda_direction: float = 0.0            # directional CLIP loss source → target (needs --source)
    lambda_id: float = 0.1                   # identity loss weight, used only with `identity` (StyleCLIP 0.1)
    # --- outputs -------------------------------------------------------------------------
    sample_every: int = 100                  # unedited-vs-edited grid every N steps (0 = only at the end)
    sample_seeds: str = "0-7"                # seeds of the sample grids
    save_every: int = 100                    # resumable checkpoint every N steps (0 = only at the end)
    evaluate: bool = True                    # oracle evaluation at the end (shapes-world CLIPs and targets)
    eval_seeds: int = 256                    # seeds 0..N-1 for that evaluation
    device: str = "auto"                     # auto, cpu, cuda, cuda:N
    quiet: bool = False                      # no progress bar; log lines only
    kind: str = RUN_KIND                     # marks config.json as a mapper run

    def __post_init__(self) -> None:
        put = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731
        if self.kind != RUN_KIND:
            raise ConfigError(f"kind={self.kind!r} is not a mapper run")
        if not str(self.target).strip():
            raise ConfigError("--target is empty", "describe the edit, e.g. --target blue")
        if self.source is not None and not self.source.strip():
            put("source", None)
        put("clip", tuple(str(c) for c in self.clip))
        put("clip_weights", tuple(float(w) for w in self.clip_weights))
        if self.clip and not self.clip_weights:
            put("clip_weights", tuple(1.0 for _ in self.clip))
        if self.clip_weights and len(self.clip_weights) != len(self.clip):
            raise ConfigError(f"{len(self.clip_weights)} clip weights for {len(self.clip)} CLIP models",
                              "give one --clip-weights value per --clip")
        if self.clip_weights and (min(self.clip_weights) < 0 or sum(self.clip_weights) <= 0):
            raise ConfigError(f"clip weights {list(self.clip_weights)} must be >= 0 with a positive sum")
        levels = self.levels.split(",") if isinstance(self.levels, str) else self.levels
        levels = tuple(v.strip() for v in levels if v.strip())
        bad = [v for v in levels if v not in MAPPER_LEVELS]
        if bad or not levels:
            raise ConfigError(f"--levels {','.join(levels) or '(none)'}: unknown or empty",
                              f"choose from {', '.join(MAPPER_LEVELS)}, comma-separated")
        put("levels", tuple(v for v in MAPPER_LEVELS if v in levels))
        for key in ("steps", "batch", "num_latents", "eval_seeds"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} {value!r} must be a positive integer")
        for key in ("sample_every", "save_every", "seed"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"--{key.replace('_', '-')} {value!r} must be an integer >= 0")
        if not self.lr > 0:
            raise ConfigError(f"--lr {self.lr!r} must be > 0")
        if not 0 <= self.lr_final <= 1:
            raise ConfigError(f"--lr-final {self.lr_final!r} must be in [0, 1]", "it is a fraction of --lr")
        if not self.strength > 0:
            raise ConfigError(f"--strength {self.strength!r} must be > 0 for training",
                              "the edit is w + strength·M(w); 0.1 is the usual value")
        if not 0 <= self.truncation <= 1:
            raise ConfigError(f"--truncation {self.truncation!r} must be in [0, 1]")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer {self.optimizer!r}", f"choose one of {', '.join(OPTIMIZERS)}")
        weights = {k: getattr(self, k) for k in LOSS_WEIGHTS}
        if min(weights.values()) < 0:
            raise ConfigError(f"loss weights {weights} must be >= 0")
        if self.lambda_clip + self.lambda_direction <= 0:
            raise ConfigError("no CLIP loss: --lambda-clip and --lambda-direction are both 0",
                              "the edit needs one of them > 0")
        if self.lambda_direction > 0 and self.source is None:
            raise ConfigError("--lambda-direction needs a --source text", "e.g. --source photo, or --lambda-direction 0")

    def lr_at(self, step: int) -> float:
        """The lr of the step taken at ``step`` (0-based): ``lr`` first, cosine down to
        ``lr · lr_final`` at the last; a function of the step alone, so resuming stays exact."""
        if self.lr_final == 1 or self.steps <= 1:
            return self.lr
        t = min(1.0, step / (self.steps - 1))
        return self.lr * (self.lr_final + (1 - self.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))

    @property
    def loss_weights(self) -> dict[str, float]:
        """Loss name → weight (the identity term only counts with an identity network)."""
        w = {k.removeprefix("lambda_"): float(getattr(self, k)) for k in LOSS_WEIGHTS}
        if self.identity is None:
            w["id"] = 0.0
        return w

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("clip", "clip_weights", "levels"):
            d[key] = list(d[key])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "MapperConfig":
        reject_unknown_keys(MapperConfig, d, "mapper options")
        d = dict(d)
        for key in ("clip", "clip_weights", "levels"):
            if key in d:
                d[key] = tuple(d[key])
        return MapperConfig(**d)

    def replace(self, **changes: Any) -> "MapperConfig":
        return dataclasses.replace(self, **changes)
