"""Training recipes carried by generator files.

A nada ``.safetensors`` generator may hold, in its header metadata under ``nada_recipe``, the
settings measured best for adapting it, so a user's own generator can bring its own defaults and
no code has to recognise a generator by name::

    {"train": {"layers": "texture", "lr": 0.03, "batch": 16, "lr_final": 0.333, "clip": [...]},
     "adapters": {"modulation": {"layers": "all", "lr": 0.05, "lr_final": 1}},
     "mapper": {"clip": [...]}, "evaluator": "shapes", "note": "why these values"}

``train`` holds values of :class:`nada.adapt.TrainConfig` options that default to "unset"
(:data:`TRAIN_KEYS`); ``adapters``, per ``--adapter stylespace|modulation``, the layer choice
and schedule (:data:`SCHEDULE_KEYS`) measured best for that adapter, over ``train``'s;
``mapper`` the CLIP models of ``nada mapper train``; ``evaluator`` the judge of the generator's images (``"shapes"``: the shapes world's oracle). ``nada train`` starts
from the official defaults, then the recipe, then the preset, then explicit options; the layer
choice (:data:`LAYER_KEYS` with lr, batch and lr_final) is one measured setting, so it is taken
from the recipe only when neither the preset nor an option chooses the layers. A generator
adapted by ``nada train`` carries its base's recipe forward. Only nada's own format carries
recipes: rosinality and NVIDIA files get the official defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

RECIPE_KEY = "nada_recipe"
CLIP_KEYS = ("clip", "clip_weights")
LAYER_KEYS = ("layers", "auto_layer_iters", "auto_layer_k")
# lr, batch and lr_final belong to the layer choice they were measured with
SCHEDULE_KEYS = (*LAYER_KEYS, "lr", "batch", "lr_final")
TRAIN_KEYS = (*SCHEDULE_KEYS, *CLIP_KEYS)
MAPPER_KEYS = CLIP_KEYS
EVALUATORS = ("shapes",)


@dataclass(frozen=True)
class Recipe:
    """A generator's recommended settings (see the module docstring)."""

    train: dict[str, Any] = field(default_factory=dict)
    mapper: dict[str, Any] = field(default_factory=dict)
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)  # adapter → schedule over train's
    evaluator: str | None = None
    note: str = ""
    source: str = ""            # the file it was read from (for messages and config.json)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"train": self.train, "mapper": self.mapper}
        if self.adapters:
            d["adapters"] = self.adapters
        if self.evaluator:
            d["evaluator"] = self.evaluator
        if self.note:
            d["note"] = self.note
        return d

    @staticmethod
    def from_dict(d: Any, source: str = "") -> "Recipe":
        """Validate a recipe read from ``source``; one ConfigError naming the file and the key."""
        where = source or "recipe"
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: the {RECIPE_KEY} metadata is not an object")
        unknown = set(d) - {"train", "mapper", "adapters", "evaluator", "note"}
        if unknown:
            raise ConfigError(f"{where}: unknown recipe entries {sorted(unknown)}",
                              "a recipe holds train, mapper, adapters, evaluator and note")
        parts = {}
        for part, allowed in (("train", TRAIN_KEYS), ("mapper", MAPPER_KEYS)):
            values = d.get(part) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: recipe {part!r} is not an object")
            bad = set(values) - set(allowed)
            if bad:
                raise ConfigError(f"{where}: recipe {part} has unknown options {sorted(bad)}",
                                  f"allowed: {', '.join(allowed)}")
            values = dict(values)
            for key in CLIP_KEYS:
                if key in values:
                    if not isinstance(values[key], (list, tuple)) or not values[key]:
                        raise ConfigError(f"{where}: recipe {part}.{key} must be a non-empty list")
                    values[key] = tuple(values[key])
            parts[part] = values
        adapters = d.get("adapters") or {}
        if not isinstance(adapters, dict) or not all(isinstance(v, dict) for v in adapters.values()):
            raise ConfigError(f"{where}: recipe 'adapters' is not an object of objects",
                              'e.g. {"modulation": {"layers": "all", "lr": 0.05}}')
        from .adapt.adapters import ADAPTER_KINDS  # the small-file adapters a recipe may tune

        bad = set(adapters) - set(ADAPTER_KINDS)
        if bad:
            raise ConfigError(f"{where}: recipe adapters has unknown adapters {sorted(bad)}",
                              f"allowed: {', '.join(ADAPTER_KINDS)}")
        for kind, values in adapters.items():
            bad = set(values) - set(SCHEDULE_KEYS)
            if bad:
                raise ConfigError(f"{where}: recipe adapters.{kind} has unknown options {sorted(bad)}",
                                  f"allowed: {', '.join(SCHEDULE_KEYS)}")
        evaluator = d.get("evaluator")
        if evaluator is not None and evaluator not in EVALUATORS:
            raise ConfigError(f"{where}: unknown recipe evaluator {evaluator!r}", f"known: {', '.join(EVALUATORS)}")
        return Recipe(parts["train"], parts["mapper"], {k: dict(v) for k, v in adapters.items()}, evaluator,
                      str(d.get("note") or ""), source)


def read_recipe_json(path: str | os.PathLike) -> Recipe:
    """A recipe written as a JSON file (for ``nada convert --recipe``), validated."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"recipe {p}: unreadable ({exc})", "give a JSON file with train / mapper / evaluator / note") from None
    return Recipe.from_dict(raw, str(p))


def recipe_from_metadata(metadata: dict[str, Any], source: str = "") -> Recipe | None:
    """The recipe in a loaded generator's metadata, or None."""
    raw = metadata.get(RECIPE_KEY)
    return None if raw is None else Recipe.from_dict(raw, source)


def read_recipe(path: str | os.PathLike) -> Recipe | None:
    """The recipe in a generator file's header (only the header is read), or None for a file
    without one or not in nada's format. A present but malformed recipe raises ConfigError."""
    p = Path(path)
    if p.suffix != ".safetensors" or not p.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
        meta = json.loads(header.get("metadata", "{}"))
    except Exception:  # noqa: BLE001  (not a readable nada file: loading it will say what is wrong)
        return None
    return recipe_from_metadata(meta, str(p)) if isinstance(meta, dict) else None


def local_generator(spec: str | None) -> Path | None:
    """The local file a generator spec names, without downloading: the shipped shapes
    generator, a path, a run directory's adapted generator, or an already cached download."""
    from . import hub, paths

    try:
        if spec is None or str(spec) == "shapes" or not ("://" in str(spec) or str(spec) in hub.KNOWN):
            return hub.resolve_generator(spec)
        name = hub.KNOWN[spec].filename if spec in hub.KNOWN else hub._filename_from_url(spec)
    except Exception:  # noqa: BLE001  (a missing file is reported when the run loads it)
        return None
    cached = paths.weights_cache_dir() / name
    return cached if cached.is_file() else None


def generator_recipe(spec: str | None) -> Recipe | None:
    """The recipe of the generator a spec names, or None (no local file, or none in it)."""
    path = local_generator(spec)
    return None if path is None else read_recipe(path)
