"""CLIP guidance adapters: the ``shapes`` spec through a stand-in ``load_shapes_clip`` (until the
real shapes CLIP lands), and preprocessing of images read back from PNG files against open_clip's
own PIL pipeline."""

import json
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nada.guidance import clip_preprocess, load_clip
from nada.guidance import encoder as encoder_mod

SHAPES_TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 32, "width": 16, "heads": 1, "layers": 1},
}


@dataclass
class StandInShapesClip:
    """The fields of nada.shapes.clip_model.ShapesClip that the adapter reads."""

    model: torch.nn.Module
    vocab: set
    templates: list = field(default_factory=lambda: ["a {} image", "{}"])
    image_size: int = 64
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)

    def tokenize(self, texts):
        words = sorted(self.vocab)
        out = torch.zeros(len(texts), 8, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [1 + words.index(w) for w in t.lower().split() if w in self.vocab][:7]
            out[i, : len(ids) + 1] = torch.tensor(ids + [31])  # end token = highest id (argmax pooling)
        return out


@pytest.fixture
def stand_in_shapes(tmp_path, monkeypatch):
    cfg = tmp_path / "nada-shapes-standin.json"
    cfg.write_text(json.dumps(SHAPES_TINY))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    bundle = StandInShapesClip(open_clip.create_model("nada-shapes-standin", pretrained=None),
                               {"a", "image", "photo", "sketch", "neon"})
    calls = []
    mod = types.ModuleType("nada.shapes.clip_model")
    mod.load_shapes_clip = lambda device=None, path=None: calls.append(device) or bundle
    monkeypatch.setitem(sys.modules, "nada.shapes.clip_model", mod)
    import nada.shapes

    monkeypatch.setattr(nada.shapes, "clip_model", mod, raising=False)
    encoder_mod.clear_cache()
    yield bundle, calls
    encoder_mod.clear_cache()


def test_shapes_spec_wraps_load_shapes_clip(stand_in_shapes):
    bundle, calls = stand_in_shapes
    enc = load_clip("shapes", torch.device("cpu"))
    assert load_clip("shapes", "cpu") is enc and len(calls) == 1  # cached per (spec, device)
    assert enc.spec == "shapes" and enc.image_size == 64 and enc.templates == bundle.templates
    assert not any(p.requires_grad for p in enc.parameters())
    # the shapes vocabulary decides unknown words
    assert enc.unknown_words("a neon Zebra photo") == ["zebra"]
    # text features: normalised mean over the shapes templates, with the shapes tokenizer
    with torch.no_grad():
        each = F.normalize(bundle.model.encode_text(bundle.tokenize(["a sketch image", "sketch"])), dim=-1)
    assert torch.allclose(enc.encode_text(["sketch"])[0], F.normalize(each.mean(0), dim=0), atol=1e-6)
    # images: the model's own mean/std and size, from any input resolution
    img = torch.rand(2, 3, 128, 128) * 2 - 1
    x = ((F.interpolate((img + 1) / 2, size=64, mode="bicubic", antialias=True).clamp(0, 1) - 0.5) / 0.25)
    with torch.no_grad():
        assert torch.allclose(enc.encode_image(img), bundle.model.encode_image(x), atol=1e-5)


def _pattern(h, w, kind):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        img = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], -1) * 255
    elif kind == "checker":
        img = (((xx // 7 + yy // 5) % 2)[..., None] * np.array([220, 40, 120])) + 20
    else:  # rings: smooth with high frequencies near the edges
        r = np.hypot(xx - w / 2, yy - h / 2)
        img = np.stack([127 + 127 * np.sin(r / 3), 127 + 127 * np.cos(r / 4), 255 * (r / r.max())], -1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pil_preprocess():
    return open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)[2]


@pytest.mark.parametrize("kind,hw", [("gradient", (256, 256)), ("checker", (333, 480)), ("rings", (512, 384)),
                                     ("rings", (160, 160))])
def test_preprocess_matches_open_clip_on_png_images(tmp_path, pil_preprocess, kind, hw):
    """Differentiable preprocessing vs open_clip's PIL pipeline on PNG files: max abs difference
    <= 0.02 in normalised units (about one uint8 step / std: PIL resamples in uint8; measured
    0.011-0.016) and mean <= 0.006 (measured ~0.004)."""
    path = tmp_path / f"{kind}.png"
    Image.fromarray(_pattern(*hw, kind)).save(path)
    pil = Image.open(path).convert("RGB")
    want = pil_preprocess(pil)[None]
    x = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    got = clip_preprocess(x, 224, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    assert got.shape == want.shape == (1, 3, 224, 224)
    diff = (got - want).abs()
    assert diff.max().item() <= 0.02 and diff.mean().item() <= 0.006, (diff.max().item(), diff.mean().item())
