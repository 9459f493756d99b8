"""Loading open_clip weights by tag: the local cache is read in place (fake HF cache layouts, no
network), the tag's QuickGELU and mean/std are applied to weights loaded from the cache, and
offline / unknown-name errors come at once."""

import json
import time

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU

from nada.errors import ModelNotFoundError
from nada.guidance import load_clip, patch_directional_loss
from nada.guidance import encoder as encoder_mod

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}
TAG_CFG = {"hf_hub": "nada-test/tiny-clip/", "quick_gelu": True, "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A tiny model with a fake ``faketag`` whose weights are found only in ``tmp_path/hub``."""
    cfg = tmp_path / "nada-tiny-tagged.json"
    cfg.write_text(json.dumps(TINY))
    open_clip.add_model_config(cfg)
    real_cfg, real_tags = open_clip.get_pretrained_cfg, open_clip.list_pretrained_tags_by_model
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda m, t: dict(TAG_CFG) if (m, t) == ("nada-tiny-tagged", "faketag") else real_cfg(m, t))
    monkeypatch.setattr(open_clip, "list_pretrained_tags_by_model",
                        lambda m: ["faketag"] if m == "nada-tiny-tagged" else real_tags(m))
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("NADA_OFFLINE", "1")
    encoder_mod.clear_cache()
    yield hub
    encoder_mod.clear_cache()


def _put_in_hub(hub, state):
    repo = hub / "models--nada-test--tiny-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    torch.save(state, snap / "open_clip_pytorch_model.bin")


def test_offline_with_empty_cache_fails_fast_naming_model_cache_and_command(fake_hub):
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as info:
        load_clip("nada-tiny-tagged:faketag", "cpu")
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert "nada-tiny-tagged:faketag" in msg and str(fake_hub) in msg
    assert "nada download-clip nada-tiny-tagged:faketag" in msg


def test_real_model_offline_with_empty_cache_is_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(encoder_mod.os.path, "expanduser", lambda p: p.replace("~", str(tmp_path)))
    encoder_mod.clear_cache()
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="ViT-B-32:openai"):
        load_clip("ViT-B/32", "cpu")
    assert time.perf_counter() - t0 < 5


def test_unknown_name_is_fast_and_lists_close_matches():
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="ViT-B-32") as info:
        load_clip("ViT-B-33:openai", "cpu")
    assert time.perf_counter() - t0 < 5
    assert "ViT-B-33" in str(info.value)


def test_cached_tag_weights_load_with_the_tags_activation_and_normalisation(fake_hub):
    torch.manual_seed(0)
    ref = open_clip.create_model("nada-tiny-tagged", pretrained=None, force_quick_gelu=True)
    _put_in_hub(fake_hub, ref.state_dict())
    enc = load_clip("nada-tiny-tagged:faketag", "cpu")
    assert isinstance(enc.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert enc.mean == TAG_CFG["mean"] and enc.std == TAG_CFG["std"]
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    m, s = torch.tensor(TAG_CFG["mean"]).view(1, 3, 1, 1), torch.tensor(TAG_CFG["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(enc.encode_image(img), ref.encode_image(((img + 1) / 2 - m) / s), atol=1e-5)


def test_patch_directional_loss_weights_parts_by_agreement():
    d = torch.eye(4)[:2]  # two part directions
    a, c = 0.3, 0.91 ** 0.5  # unit patches whose edit is exactly 2a along part 0
    f0 = torch.tensor([[-a, 0, c, 0], [-a, 0, 0, c]])
    f1 = torch.tensor([[a, 0, c, 0], [a, 0, 0, c]])
    cos = torch.tensor([1.0, 0.0])
    want = ((1 - cos) * cos.softmax(0)).sum()
    assert torch.allclose(patch_directional_loss(f0, f1, d), want, atol=1e-4)
    # one direction: the plain directional loss on patches (0 aligned, 2 opposite)
    assert patch_directional_loss(f0, f1, d[0]).item() < 1e-4
    assert abs(patch_directional_loss(f1, f0, d[0]).item() - 2) < 1e-4
    # unchanged patches: finite loss and gradients
    f = f0.clone().requires_grad_(True)
    loss = patch_directional_loss(f0, f, d)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()
    assert torch.allclose(loss, torch.tensor(1.0))


def test_ensemble_patch_loss_with_part_templates_matches_the_function():
    torch.manual_seed(0)
    cfg_name = "nada-tiny-patch"
    import tempfile
    from pathlib import Path

    from nada.guidance import CLIPGuidance, ClipEncoder, random_patches, text_direction

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / f"{cfg_name}.json").write_text(json.dumps(TINY))
        open_clip.add_model_config(Path(d) / f"{cfg_name}.json")
    model = open_clip.create_model(cfg_name, pretrained=None)
    enc = ClipEncoder("tiny", model, open_clip.get_tokenizer(cfg_name), 32, (0.5,) * 3, (0.25,) * 3, ["{}"])
    img0, img1 = torch.rand(2, 3, 64, 64) * 2 - 1, (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    parts = ["a detail of {}", "{} texture"]
    guide = CLIPGuidance([enc, enc], [0.25, 0.75])
    got = guide.patch_directional_loss(img0, img1, "photo", "sketch", num_patches=3, frac=0.5,
                                       generator=torch.Generator().manual_seed(1), part_templates=parts)
    src, ed = random_patches(img0, img1, 3, 0.5, torch.Generator().manual_seed(1))
    dirs = torch.stack([text_direction(*enc.encode_text([p.format("photo"), p.format("sketch")])) for p in parts])
    want = patch_directional_loss(enc.encode_image(src), enc.encode_image(ed), dirs)
    assert torch.allclose(got, want, atol=1e-5)
    got.backward()
    assert img1.grad.abs().sum() > 0 and all(p.grad is None for p in enc.parameters())
