"""The shapes CLIP: a small open_clip model that knows only the shapes world's words.

A real ``open_clip.CLIP`` built from a small custom config (64x64 ViT, short word-level
text tower), so the guidance code treats it like any other CLIP. Weights live in
``pretrained/shapes_clip/`` as safetensors (fp16) plus a JSON file with the config, the
vocabulary and the prompt templates; ``scripts/train_shapes_clip.py`` reproduces them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nada.errors import CheckpointError, ConfigError, one_line
from nada.shapes.renderer import COLOURS, SHAPES, STYLES

logger = logging.getLogger(__name__)



def default_dir() -> Path:
    """The shipped 16 px-patch shapes CLIP (``shapes``), in :func:`nada.paths.pretrained_dir`."""
    from nada.paths import pretrained_dir

    return pretrained_dir() / "shapes_clip"


def fine_dir() -> Path:
    """The shipped 8 px-patch shapes CLIP (``shapes-fine``)."""
    return default_dir().with_name("shapes_clip_fine")


WEIGHTS_NAME = "model.safetensors"
META_NAME = "shapes_clip.json"

PAD, SOT, EOT, UNK = "<pad>", "<sot>", "<eot>", "<unk>"
SPECIAL = (PAD, SOT, EOT, UNK)
FILLERS = (
    "a", "an", "of", "the", "in", "on", "with", "and", "style", "shape", "image", "picture",
    "drawing", "rendering", "object", "art", "photo", "figure", "painting", "icon",
)
# Prompt templates: what the text tower was trained on; "{}" takes a phrase such as "sketch" or "red star".
TEMPLATES = ("{}", "a {}", "a {} shape", "an image of a {}", "a {} image", "a picture in {} style")


def world_words() -> list[str]:
    """Every content word of the world (styles, shapes, colour buckets) followed by the fillers."""
    words: list[str] = []
    for phrase in (*STYLES, *SHAPES, *COLOURS, *FILLERS):
        for w in phrase.split():
            if w not in words:
                words.append(w)
    return words


@dataclass(frozen=True)
class ShapesClipConfig:
    """Size of the shapes CLIP (open_clip vision/text towers)."""

    embed_dim: int = 128  # joint embedding width
    image_size: int = 64  # input resolution in px
    patch_size: int = 8  # ViT patch size in px (8x8 grid of patches)
    vision_width: int = 128  # ViT width
    vision_layers: int = 3  # ViT depth
    text_width: int = 128  # text transformer width
    text_layers: int = 2  # text transformer depth
    heads: int = 4  # attention heads in both towers
    context_length: int = 16  # tokens incl. <sot> and <eot>

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}",
                              "pick a patch size that divides the image size")


class WordTokenizer:
    """Lower-cases, splits on non-letters, maps words to ids (unknown words -> <unk>)."""

    def __init__(self, words: list[str], context_length: int):
        self.itos = list(SPECIAL) + [w for w in words if w not in SPECIAL]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.context_length = context_length

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"[a-z]+", text.lower())

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` the model has never seen (they all map to <unk>)."""
        return [w for w in self.split(text) if w not in self.stoi]

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        """LongTensor [N, context_length]: <sot> words <eot> <pad>...; too-long prompts are cut."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.full((len(texts), self.context_length), self.stoi[PAD], dtype=torch.long)
        unk = self.stoi[UNK]
        for i, t in enumerate(texts):
            ids = [self.stoi.get(w, unk) for w in self.split(t)][: self.context_length - 2]
            ids = [self.stoi[SOT], *ids, self.stoi[EOT]]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


def build_model(cfg: ShapesClipConfig, vocab_size: int):
    """An ``open_clip.CLIP`` with the small shapes config (random weights)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=cfg.vision_layers, width=cfg.vision_width, head_width=cfg.vision_width // cfg.heads,
                           patch_size=cfg.patch_size, image_size=cfg.image_size)
    text = CLIPTextCfg(context_length=cfg.context_length, vocab_size=vocab_size, width=cfg.text_width,
                       heads=cfg.heads, layers=cfg.text_layers, pad_id=0, eos_id=SPECIAL.index(EOT), pool_type="eos")
    return CLIP(embed_dim=cfg.embed_dim, vision_cfg=vision, text_cfg=text)


@dataclass
class ShapesClip:
    """The shapes CLIP as the guidance code uses it."""

    model: torch.nn.Module  # open_clip.CLIP; encode_image on normalised [N,3,64,64], encode_text on tokens
    tokenizer: WordTokenizer
    templates: list[str]  # prompt templates with one "{}"
    vocab: set[str]  # words the tokenizer knows
    config: ShapesClipConfig = field(default_factory=ShapesClipConfig)
    image_size: int = 64
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # so that normalised input == renderer.to_tensor output
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def tokenize(self, texts: list[str] | str) -> torch.Tensor:
        """Token ids on the model's device; warns once per prompt that has unknown words."""
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            unknown = self.tokenizer.unknown_words(t)
            if unknown:
                logger.warning("shapes CLIP does not know %s in %r; it knows: %s", unknown, t, ", ".join(sorted(self.vocab)))
        device = next(self.model.parameters()).device
        return self.tokenizer(texts).to(device)

    @torch.no_grad()
    def text_features(self, phrases: list[str]) -> torch.Tensor:
        """Unit text embedding per phrase, averaged over the templates (as guidance does)."""
        feats = []
        for p in phrases:
            e = self.model.encode_text(self.tokenize([t.format(p) for t in self.templates]))
            e = torch.nn.functional.normalize(e.float(), dim=-1).mean(0)
            feats.append(torch.nn.functional.normalize(e, dim=-1))
        return torch.stack(feats)

    @torch.no_grad()
    def image_features(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Unit image embeddings of normalised [N,3,64,64] images."""
        out = [self.model.encode_image(images[i : i + batch]) for i in range(0, len(images), batch)]
        return torch.nn.functional.normalize(torch.cat(out).float(), dim=-1)


def save_shapes_clip(model: torch.nn.Module, cfg: ShapesClipConfig, tokenizer: WordTokenizer, out_dir: Path,
                     extra: dict | None = None) -> None:
    """Write fp16 safetensors weights and the JSON metadata (config, vocab, templates)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out_dir / WEIGHTS_NAME))
    meta = {"config": asdict(cfg), "vocab": tokenizer.itos, "templates": list(TEMPLATES), **(extra or {})}
    (out_dir / META_NAME).write_text(json.dumps(meta, indent=1))


def load_shapes_clip(device=None, path: str | Path | None = None) -> ShapesClip:
    """Load the shipped shapes CLIP (fp32, eval mode) from ``pretrained/shapes_clip/``."""
    from safetensors.torch import load_file

    d = Path(path) if path is not None else default_dir()
    wpath, mpath = d / WEIGHTS_NAME, d / META_NAME
    if not wpath.is_file() or not mpath.is_file():
        raise CheckpointError(f"shapes CLIP weights not found in {d}", "run scripts/train_shapes_clip.py to make them")
    try:
        meta = json.loads(mpath.read_text())
        cfg = ShapesClipConfig(**meta["config"])
        itos = list(meta["vocab"])
        templates = [str(t) for t in meta["templates"]]
        if tuple(itos[: len(SPECIAL)]) != SPECIAL:
            raise CheckpointError(f"{mpath} vocabulary does not start with {SPECIAL}", "re-export the shapes CLIP")
        tok = WordTokenizer(itos[len(SPECIAL):], cfg.context_length)
        model = build_model(cfg, tok.vocab_size)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001  (a damaged config: bad JSON, keys, values or vocabulary)
        raise CheckpointError(f"{mpath}: not a shapes CLIP config ({one_line(exc)})", "re-export the shapes CLIP") from None
    try:
        sd = {k: v.float() for k, v in load_file(str(wpath)).items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except Exception as exc:  # noqa: BLE001  (truncated or corrupt weights, wrong shapes)
        raise CheckpointError(f"{wpath}: unreadable shapes CLIP weights ({one_line(exc)})", "re-export the shapes CLIP") from None
    if missing or unexpected:
        raise CheckpointError(f"{wpath} does not fit the shapes CLIP config (missing {missing[:3]}, unexpected {unexpected[:3]})",
                              "re-export the shapes CLIP")
    model = model.to(device).eval().requires_grad_(False)
    return ShapesClip(model=model, tokenizer=tok, templates=templates, vocab=set(itos[len(SPECIAL):]),
                      config=cfg, image_size=cfg.image_size)


@torch.no_grad()
def measure_shapes_clip(clip: ShapesClip, n: int = 1000, seed: int = 10_000) -> dict:
    """Zero-shot accuracies (style, shape, colour bucket on coloured styles) on ``n`` fresh renders,
    and per style pair cos(text direction A->B, mean image direction of the same factors A->B)."""
    import itertools

    import numpy as np

    from nada.shapes.renderer import STYLES_WITH_COLOUR, random_factors, render_batch, to_tensor

    device = next(clip.model.parameters()).device
    rng = np.random.default_rng(seed)
    factors = random_factors(rng, n)
    seeds = rng.integers(0, 2**31, size=n).tolist()
    feats = clip.image_features(to_tensor(render_batch(factors, seeds), device))
    out: dict = {"n": n, "seed": seed}
    for name, names, truth, keep in (
        ("style", STYLES, [STYLES.index(f.style) for f in factors], [True] * n),
        ("shape", SHAPES, [SHAPES.index(f.shape) for f in factors], [True] * n),
        ("colour", COLOURS, [f.colour for f in factors], [f.style in STYLES_WITH_COLOUR for f in factors]),
    ):
        pred = (feats @ clip.text_features(list(names)).T).argmax(1).cpu().numpy()
        k = np.asarray(keep)
        out[f"{name}_acc"] = float((pred[k] == np.asarray(truth)[k]).mean())
    m = max(n // 4, 8)
    base = random_factors(rng, m)
    pair_seeds = rng.integers(0, 2**31, size=m).tolist()
    style_feats = {s: clip.image_features(to_tensor(render_batch([f.replace(style=s) for f in base], pair_seeds), device))
                   for s in STYLES}
    text = dict(zip(STYLES, clip.text_features(list(STYLES))))
    out["direction_cos"] = {}
    for a, b in itertools.permutations(STYLES, 2):
        img_dir = (style_feats[b] - style_feats[a]).mean(0)
        out["direction_cos"][f"{a}->{b}"] = float(torch.nn.functional.cosine_similarity(img_dir, text[b] - text[a], dim=0))
    out["direction_cos_min"] = min(out["direction_cos"].values())
    return out
