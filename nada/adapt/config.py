"""``TrainConfig``: every option of ``nada train`` as one typed, frozen, validated record, plus
the named presets of the official StyleGAN-NADA code and notebook."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, reject_unknown_keys
from .adapters import ADAPTERS

SHAPES = "shapes"  # generator / CLIP spec of the embedded shapes world

# Official StyleGAN-NADA (ZSSGAN train_options + notebook) defaults for real CLIP models.
OFFICIAL_CLIP = ("ViT-B-32:openai", "ViT-B-16:openai")

# The StyleGAN2 generator optimiser, as the official code sets it up: lr · reg_ratio,
# betas (0 ** reg_ratio, 0.99 ** reg_ratio) with reg_ratio = 4/5 (lazy-regularisation ratio).
G_REG_RATIO = 4 / 5


def generator_adam(lr: float) -> tuple[float, tuple[float, float]]:
    """(Adam lr, betas) of the official StyleGAN2 generator optimiser for base learning rate ``lr``."""
    return lr * G_REG_RATIO, (0.0**G_REG_RATIO, 0.99**G_REG_RATIO)


OFFICIAL_LR = 0.002
# An unset lr of an adapter run whose generator's recipe names no lr for that adapter is the
# full-fine-tuning lr (recipe or official) times this: a style offset needs larger steps than a
# weight (measured on the shapes world: docs/domains.md).
ADAPTER_LR_FACTOR = {"full": 1.0, "stylespace": 10.0, "modulation": 1.0}
OFFICIAL_BATCH = 2
DEFAULT_K = 2

_K_FRACTION = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

# Named presets: option values taken together. Explicit options override a preset's values.
PRESETS: dict[str, dict[str, Any]] = {
    # Measured best on the shapes world (see README / scripts/bench_train.py).
    "default": {},
    # Official train.py defaults: adaptive layer search, top-1 style index, batch 8, 1 step.
    "paper": {"auto_layer_k": 1, "auto_layer_iters": 1, "auto_layer_batch": 8, "mixing": 0.0},
    # Official notebook default: no layer search, every synthesis conv layer trained.
    "notebook": {"auto_layer_iters": 0, "mixing": 0.0},
    # Official notebook "improve shape": k = int(2·num_ws/3), 1 search step of batch 8, mixing 0.9.
    "improve-shape": {"auto_layer_k": "2/3", "auto_layer_iters": 1, "auto_layer_batch": 8, "mixing": 0.9},
}


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a NADA run. ``None``/empty fields are resolved in ``__post_init__`` so that
    ``to_dict()`` (written to ``config.json``) holds the concrete values used."""

    # --- where ---------------------------------------------------------------------------
    out: str = "runs/nada"                   # run directory (config.json, metrics.jsonl, samples/, …)
    overwrite: bool = False                  # replace an existing run directory
    resume: bool = False                     # continue the run in `out` from its resumable checkpoint
    # --- models --------------------------------------------------------------------------
    generator: str = SHAPES                  # frozen source generator: path, known name, URL or 'shapes'
    train_generator: str | None = None       # initial weights of the trainable twin (default: the generator)
    clip: tuple[str, ...] = ()               # CLIP specs; () = the generator's recipe, else the official pair
    clip_weights: tuple[float, ...] = ()     # one weight per CLIP model; () = all 1 (official)
    # --- what to learn -------------------------------------------------------------------
    source: str = "photo"                    # text describing the source domain
    target: str | None = None                # text describing the target domain (or style_images)
    style_images: str | None = None          # folder of target-style images (instead of target)
    style_image_samples: int = 16            # generated source samples for the image direction (official 16)
    # --- schedule ------------------------------------------------------------------------
    iters: int = 300                         # training iterations
    batch: int | None = None                 # latents per iteration. None: the recipe's, else 2 (official)
    lr: float | None = None                  # base lr; Adam uses lr·4/5. None: the recipe's, else 0.002 (official)
    lr_final: float | None = None            # cosine-anneal lr to this fraction of it by the last iteration; 1 = constant
                                             # (official). None: the recipe's, else 1
    mixing: float = 0.0                      # style-mixing probability of training latents (official 0)
    truncation: float = 1.0                  # truncation psi of training latents (official 1 = none)
    noise_mode: str = "random"               # 'random': one shared noise draw per step for both twins; 'const'
    seed: int = 0                            # seed of every random draw of the run
    # --- what learns ---------------------------------------------------------------------
    adapter: str = "full"                    # full: the layers' weights; stylespace / modulation: a domain file
    layers: str | None = None                # layer spec (names, globs b8.*, presets); None = the recipe's, else all conv layers
    auto_layer_iters: int | None = None      # W+ search steps per iteration; 0 = off; None = 0 with layers, else 1
    auto_layer_k: int | str | None = None    # style indices unfrozen per step: int, 'N/M' of num_ws, or 'all'; None = 2
    auto_layer_batch: int = 8                # latents in the layer search (official 8)
    auto_layer_lr: float = 0.01              # SGD lr of the W+ search (official)
    auto_layer_every: int = 1                # search every N iterations, reuse the choice between (official 1)
    # --- losses (weights) ----------------------------------------------------------------
    lambda_direction: float = 1.0            # directional CLIP loss (official 1)
    lambda_global: float = 0.0               # global CLIP loss (official 0)
    lambda_norm: float = 0.0                 # CLIP embedding-norm loss
    lambda_manifold: float = 0.0             # manifold angle loss (official 0)
    lambda_patch: float = 0.0                # patch directional loss (official 0)
    lambda_consistency: float = 0.0          # in-domain angle consistency across the batch (HyperDomainNet)
    # --- outputs -------------------------------------------------------------------------
    sample_every: int = 100                  # frozen-vs-adapted grid every N iterations (0 = only at the end)
    sample_seeds: str = "0-7"                # seeds of the sample grids
    sample_truncation: float = 0.7           # truncation psi of the sample grids (official 0.7)
    save_every: int = 100                    # checkpoint every N iterations (0 = only at the end)
    evaluate: bool = True                    # judge the result at the end when the generator's recipe names an evaluator
    eval_seeds: int = 256                    # seeds 0..N-1 for that evaluation
    device: str = "auto"                     # auto, cpu, cuda, cuda:N
    quiet: bool = False                      # no progress bar; log lines only
    preset: str = "default"                  # the preset these values started from (for the record)
    evaluator: str | None = None             # judge of the images ('shapes' = the shapes oracle, '' = none); None = the recipe's
    origin: dict[str, str] = field(default_factory=dict, compare=False)  # where each value came from (config.json)

    def __post_init__(self) -> None:
        def put(key: str, value: Any) -> None:
            object.__setattr__(self, key, value)

        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}", f"choose one of {', '.join(PRESETS)}")
        self._resolve_defaults(put)
        put("clip", tuple(str(c) for c in self.clip))
        put("clip_weights", tuple(float(w) for w in self.clip_weights) or tuple(1.0 for _ in self.clip))
        if len(self.clip_weights) != len(self.clip):
            raise ConfigError(
                f"{len(self.clip_weights)} clip weights for {len(self.clip)} CLIP models {list(self.clip)}",
                "give one --clip-weights value per --clip",
            )
        if min(self.clip_weights) < 0 or sum(self.clip_weights) <= 0:
            raise ConfigError(f"clip weights {list(self.clip_weights)} must be >= 0 with a positive sum")
        if (self.target is None) == (self.style_images is None):
            raise ConfigError("give exactly one of --target TEXT or --style-images DIR")
        if self.target is not None and not self.target.strip():
            raise ConfigError("--target is empty", "describe the target domain, e.g. --target sketch")
        if not self.source.strip():
            raise ConfigError("--source is empty", "describe the source domain, e.g. --source photo")
        for key in ("iters", "batch", "auto_layer_batch", "auto_layer_every", "style_image_samples", "eval_seeds"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key.replace('_', '-')}={value!r} must be a positive integer")
        for key in ("sample_every", "save_every", "seed"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{key.replace('_', '-')}={value!r} must be an integer >= 0")
        for key in ("lr", "auto_layer_lr"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key.replace('_', '-')}={getattr(self, key)!r} must be > 0")
        if not 0 <= self.lr_final <= 1:
            raise ConfigError(f"lr-final={self.lr_final!r} must be in [0, 1]",
                              "it is a fraction of --lr; 1 keeps the lr constant")
        if not 0 <= self.mixing <= 1:
            raise ConfigError(f"mixing={self.mixing!r} must be a probability in [0, 1]")
        for key in ("truncation", "sample_truncation"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{key.replace('_', '-')}={getattr(self, key)!r} must be in [0, 1]")
        if self.adapter not in ADAPTERS:
            raise ConfigError(f"unknown adapter {self.adapter!r}", f"choose one of {', '.join(ADAPTERS)}")
        if self.adapter != "full" and self.train_generator is not None:
            raise ConfigError("--train-generator works with --adapter full only",
                              "a domain file is learnt on top of --generator itself")
        if self.noise_mode not in ("random", "const"):
            raise ConfigError(f"noise_mode={self.noise_mode!r}", "use random or const")
        lambdas = {k: getattr(self, k) for k in LOSS_WEIGHTS}
        if min(lambdas.values()) < 0 or sum(lambdas.values()) <= 0:
            raise ConfigError(f"loss weights {lambdas} must be >= 0 with at least one positive")
        if self.layers is not None and not self.layers.strip():
            raise ConfigError("--layers is empty", "give names like b8.conv0,b16.*, or a preset (all, shape, texture)")
        if self.auto_layer_iters is None:
            put("auto_layer_iters", 0 if self.layers is not None else 1)
        if not isinstance(self.auto_layer_iters, int) or self.auto_layer_iters < 0:
            raise ConfigError(f"auto-layer-iters={self.auto_layer_iters!r} must be an integer >= 0")
        parse_k(self.auto_layer_k)  # validates
        if isinstance(self.auto_layer_k, str) and self.auto_layer_k.strip().isdigit():
            put("auto_layer_k", int(self.auto_layer_k))

    def _resolve_defaults(self, put) -> None:
        """Unset values (None / empty): from the generator's recipe (:mod:`nada.recipe`), else the
        official defaults; ``origin`` records where every value came from."""
        from ..recipe import CLIP_KEYS, LAYER_KEYS, TRAIN_KEYS, generator_recipe

        unset = {k for k in TRAIN_KEYS if getattr(self, k) in (None, ())}
        recipe = generator_recipe(self.generator) if unset or self.evaluator is None else None
        origin = dict(self.origin)
        from_recipe = dict(recipe.train) if recipe else {}
        for_adapter = dict(recipe.adapters.get(self.adapter, {})) if recipe else {}
        from_recipe.update(for_adapter)
        if any(getattr(self, k) is not None for k in LAYER_KEYS):  # the layers are chosen: not the recipe's
            from_recipe = {k: v for k, v in from_recipe.items() if k in CLIP_KEYS}
        for_adapter = {k: v for k, v in for_adapter.items() if k in from_recipe}
        if "clip" not in unset:  # weights belong to the model list they were given with
            from_recipe.pop("clip_weights", None)
        for key in sorted(unset):
            if key in from_recipe:
                put(key, from_recipe[key])
                origin[key] = f"recipe ({recipe.source}{f', {self.adapter} adapter' if key in for_adapter else ''})"
        official = {"lr": OFFICIAL_LR, "batch": OFFICIAL_BATCH, "lr_final": 1.0, "auto_layer_k": DEFAULT_K,
                    "clip": OFFICIAL_CLIP}
        for key, value in official.items():
            if getattr(self, key) in (None, ()):
                put(key, value)
                origin[key] = "default"
        factor = ADAPTER_LR_FACTOR.get(self.adapter, 1.0)
        if "lr" in unset and factor != 1.0 and "lr" not in for_adapter:
            put("lr", self.lr * factor)
            origin["lr"] = f"{origin['lr']} x {factor:g} ({self.adapter} adapter)"
        if self.evaluator is None:
            put("evaluator", recipe.evaluator or "" if recipe else "")
            origin["evaluator"] = f"recipe ({recipe.source})" if recipe and recipe.evaluator else "default"
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.default is not dataclasses.MISSING}
        for f in dataclasses.fields(self):
            if f.name != "origin" and f.name not in origin:
                value = getattr(self, f.name)
                origin[f.name] = "default" if f.name in defaults and value == defaults[f.name] else "option"
        put("origin", origin)

    # --- helpers ---------------------------------------------------------------------------
    @property
    def adam_lr(self) -> float:
        return generator_adam(self.lr)[0]

    @property
    def adam_betas(self) -> tuple[float, float]:
        return generator_adam(self.lr)[1]

    def lr_at(self, iteration: int) -> float:
        """Base lr of the step taken at ``iteration`` (0-based): ``lr`` at the first step, cosine
        down to ``lr · lr_final`` at the last (constant when ``lr_final`` is 1). A function of the
        iteration alone, so a resumed run follows the same schedule."""
        if self.lr_final == 1 or self.iters <= 1:
            return self.lr
        t = min(1.0, iteration / (self.iters - 1))
        return self.lr * (self.lr_final + (1 - self.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))

    @property
    def evaluates_on_shapes(self) -> bool:
        """The generator's recipe names the shapes oracle as the judge of its images."""
        return self.evaluator == "shapes"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["clip"] = list(self.clip)
        d["clip_weights"] = list(self.clip_weights)
        d["origin"] = dict(sorted(self.origin.items()))
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TrainConfig":
        reject_unknown_keys(TrainConfig, d, "train options")
        d = dict(d)
        for key in ("clip", "clip_weights"):
            if key in d:
                d[key] = tuple(d[key])
        return TrainConfig(**d)

    @staticmethod
    def from_preset(name: str, **overrides: Any) -> "TrainConfig":
        """A config that starts from a named preset; explicit ``overrides`` win."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}", f"choose one of {', '.join(PRESETS)}")
        origin = {k: f"preset {name}" for k in PRESETS[name] if k not in overrides}
        return TrainConfig(**{**PRESETS[name], **overrides, "preset": name, "origin": origin})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


LOSS_WEIGHTS = ("lambda_direction", "lambda_global", "lambda_norm", "lambda_manifold", "lambda_patch",
               "lambda_consistency")


def parse_k(spec: int | str) -> tuple[str, Any]:
    """Validate ``auto_layer_k``: ('int', k), ('fraction', (n, m)) or ('all', None)."""
    if isinstance(spec, bool):
        raise ConfigError(f"auto-layer-k={spec!r}", "use a positive integer, a fraction like 2/3, or all")
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"auto-layer-k={spec} must be >= 1")
        return "int", spec
    text = str(spec).strip()
    if text == "all":
        return "all", None
    if text.isdigit():
        return parse_k(int(text))
    m = _K_FRACTION.match(text)
    if m and int(m.group(2)) > 0 and 0 < int(m.group(1)) <= int(m.group(2)):
        return "fraction", (int(m.group(1)), int(m.group(2)))
    raise ConfigError(f"auto-layer-k={spec!r}", "use a positive integer, a fraction of num_ws like 2/3, or all")


def resolve_k(spec: int | str, num_candidates: int, num_ws: int) -> int:
    """The number of style indices to unfreeze: ``int(n/m · num_ws)`` for fractions (as the
    notebook's ``int(2·num_ws/3)``), capped at the number of candidate indices, at least 1."""
    kind, value = parse_k(spec)
    if kind == "all":
        k = num_candidates
    elif kind == "fraction":
        k = int(value[0] * num_ws / value[1])
    else:
        k = value
    return max(1, min(k, num_candidates))
