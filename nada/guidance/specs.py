"""CLIP model specs: ``name:pretrained``, ``name:/path/to/weights``, OpenAI spellings, ``shapes``
and ``shapes-fine`` (the embedded shapes CLIPs: 16 and 8 px patches) and ``shapes:DIR`` (a shapes
CLIP written by scripts/train_shapes_clip.py).

Parsing is separate from loading so errors for unknown names or tags come before any work.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from ..errors import ModelNotFoundError

# The OpenAI ``clip`` package's names, as the original StyleGAN-NADA code and its users write them.
OPENAI_ALIASES = {
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336px": "ViT-L-14-336",
    "RN50": "RN50",
    "RN101": "RN101",
    "RN50x4": "RN50x4",
    "RN50x16": "RN50x16",
    "RN50x64": "RN50x64",
}

SHAPES_SPEC = "shapes"
SHAPES_FINE_SPEC = "shapes-fine"


@dataclass(frozen=True)
class ClipSpec:
    """A parsed CLIP model spec."""

    name: str                   # open_clip model name (or "shapes")
    pretrained: str | None      # open_clip pretrained tag (for "shapes": None, or "fine"), None with ``path``
    path: str | None = None     # local weights file (for "shapes": a model folder)

    @property
    def canonical(self) -> str:
        if self.name == SHAPES_SPEC:
            if self.path:
                return f"{SHAPES_SPEC}:{self.path}"
            return SHAPES_FINE_SPEC if self.pretrained == "fine" else SHAPES_SPEC
        return f"{self.name}:{self.path or self.pretrained}"


def _looks_like_path(s: str) -> bool:
    return os.sep in s or s.startswith(".") or s.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _close(word: str, options: list[str]) -> str:
    matches = difflib.get_close_matches(word, options, n=5, cutoff=0.5)
    return ", ".join(matches) if matches else ", ".join(sorted(options)[:8]) + ", ..."


def _missing_shapes_files(folder: str) -> list[str]:
    """The files of a shapes CLIP folder (metadata, weights) that ``folder`` lacks; all of them
    for an empty name."""
    from ..shapes.clip_model import META_NAME, WEIGHTS_NAME

    return [n for n in (META_NAME, WEIGHTS_NAME) if not folder or not os.path.isfile(os.path.join(folder, n))]


def parse_spec(spec: str) -> ClipSpec:
    """Validate a spec against open_clip's registry (no download, no model built)."""
    import open_clip

    spec = spec.strip()
    if not spec:
        raise ModelNotFoundError("empty CLIP model spec", "use e.g. ViT-B-32:openai or shapes")
    if spec == SHAPES_SPEC:
        return ClipSpec(SHAPES_SPEC, None)
    if spec == SHAPES_FINE_SPEC:
        from ..shapes.clip_model import fine_dir

        if _missing_shapes_files(str(fine_dir())):
            raise ModelNotFoundError(f"the fine shapes CLIP is not in {fine_dir()}", "use 'shapes', or reinstall nada")
        return ClipSpec(SHAPES_SPEC, "fine")
    if spec.startswith(SHAPES_SPEC + ":"):
        folder = spec[len(SHAPES_SPEC) + 1 :]
        missing = _missing_shapes_files(folder)
        if missing:
            raise ModelNotFoundError(
                f"{folder!r} is not a shapes CLIP folder (needs {' and '.join(missing)})",
                "pass the --out folder of scripts/train_shapes_clip.py, or plain 'shapes' for the embedded one",
            )
        return ClipSpec(SHAPES_SPEC, None, os.path.abspath(folder))
    if spec in OPENAI_ALIASES:
        return ClipSpec(OPENAI_ALIASES[spec], "openai")
    name, sep, tag = spec.partition(":")
    if name in OPENAI_ALIASES and name not in open_clip.list_models():
        name = OPENAI_ALIASES[name]
    models = open_clip.list_models()
    if name not in models:
        raise ModelNotFoundError(
            f"unknown CLIP model {name!r}",
            f"close matches: {_close(name, models + list(OPENAI_ALIASES) + [SHAPES_SPEC, SHAPES_FINE_SPEC])}",
        )
    if not sep or not tag:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if "openai" in tags:
            return ClipSpec(name, "openai")
        raise ModelNotFoundError(
            f"CLIP model {name!r} needs pretrained weights",
            f"write {name}:TAG with TAG one of {', '.join(tags) or '(none known)'}, or {name}:/path/to/weights",
        )
    if _looks_like_path(tag):
        if not os.path.isfile(tag):
            raise ModelNotFoundError(f"CLIP weights file {tag!r} does not exist", "check the path after the colon")
        return ClipSpec(name, None, os.path.abspath(tag))
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        raise ModelNotFoundError(
            f"CLIP model {name!r} has no pretrained weights {tag!r}",
            f"available: {', '.join(tags) or '(none)'}; close: {_close(tag, tags) if tags else '-'}",
        )
    return ClipSpec(name, tag)
