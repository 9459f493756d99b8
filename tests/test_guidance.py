"""CLIP guidance: spec parsing and errors, preprocessing vs open_clip's PIL pipeline, frozen
encoders, text templates and caching, the NADA losses on constructed embeddings, ensembles."""

import json
import time

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nada.errors import ModelNotFoundError
from nada.guidance import (
    ClipEncoder,
    CLIPGuidance,
    angle_consistency_loss,
    clip_preprocess,
    directional_loss,
    embedding_norm_loss,
    global_clip_loss,
    load_clip,
    manifold_angle_loss,
    parse_spec,
    text_direction,
)
from nada.guidance import encoder as encoder_mod

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    (d / "nada-tiny-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(d / "nada-tiny-test.json")
    return "nada-tiny-test"


def make_encoder(name, templates=("{}",), seed=0, vocab=None):
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    return ClipEncoder(
        f"{name}:random{seed}", model, open_clip.get_tokenizer(name), model.visual.image_size[0]
        if isinstance(model.visual.image_size, tuple) else model.visual.image_size,
        open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD, list(templates), vocab,
    )


# ------------------------------------------------------------------------------------------
# Specs and loading errors


def test_spec_spellings():
    assert parse_spec("ViT-B/32").canonical == "ViT-B-32:openai"
    assert parse_spec("ViT-B-16:openai").canonical == "ViT-B-16:openai"
    assert parse_spec("RN50").canonical == "RN50:openai"
    assert parse_spec("ViT-B-32:laion2b_s34b_b79k").pretrained == "laion2b_s34b_b79k"
    assert parse_spec("shapes").name == "shapes"


def test_unknown_names_list_close_matches():
    with pytest.raises(ModelNotFoundError, match="ViT-B-32"):
        parse_spec("ViT-B32")
    with pytest.raises(ModelNotFoundError, match="openai"):
        parse_spec("ViT-B-32:opnai")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        parse_spec("ViT-B-32:/no/such/weights.pt")


def test_offline_without_cached_weights_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("NADA_OFFLINE", "1")
    monkeypatch.setattr(encoder_mod, "cached_weights", lambda spec: None)
    encoder_mod.clear_cache()
    t0 = time.time()
    with pytest.raises(ModelNotFoundError) as info:
        load_clip("ViT-B-32:openai")
    assert time.time() - t0 < 5
    msg = str(info.value)
    assert "ViT-B-32:openai" in msg and "cache" in msg and "nada download-clip ViT-B-32:openai" in msg


def test_local_weights_file_loads_frozen_and_is_shared(tiny_name, tmp_path):
    model = open_clip.create_model(tiny_name, pretrained=None)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    encoder_mod.clear_cache()
    a = load_clip(f"{tiny_name}:{path}")
    b = load_clip(f"{tiny_name}:{path}")
    assert a is b  # one copy per process
    assert not any(p.requires_grad for p in a.parameters())
    assert not a.model.training
    assert torch.equal(a.model.visual.conv1.weight, model.visual.conv1.weight)
    assert a.templates and all("{}" in t for t in a.templates)  # ImageNet templates


# ------------------------------------------------------------------------------------------
# Preprocessing


def _test_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 / w), (yy * 255 / h), 128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], -1)
    img = img + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("hw", [(64, 64), (256, 256), (300, 200), (1024, 1024)])
def test_preprocess_matches_open_clip_pil_pipeline(hw):
    pil_preprocess = open_clip.image_transform(
        224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    arr = _test_image(*hw)
    want = pil_preprocess(Image.fromarray(arr))[None]
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1
    got = clip_preprocess(x, 224, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    assert got.shape == want.shape
    diff = (got - want).abs()
    assert diff.max().item() <= 0.06, diff.max().item()
    assert diff.mean().item() <= 0.01, diff.mean().item()


# ------------------------------------------------------------------------------------------
# Encoders


def test_gradients_reach_images_not_clip(tiny_name):
    enc = make_encoder(tiny_name)
    img = torch.rand(2, 3, 64, 48, requires_grad=True) * 2 - 1
    img.retain_grad()
    feat = enc.encode_image(img)
    assert feat.dtype == torch.float32 and feat.shape == (2, 32)
    feat.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())


def test_text_features_are_normalised_template_means_and_cached(tiny_name, monkeypatch):
    templates = ["a photo of {}", "{} art", "an image of the {}"]
    enc = make_encoder(tiny_name, templates)
    got = enc.encode_text(["sketch"])[0]
    tok = open_clip.get_tokenizer(tiny_name)
    with torch.no_grad():
        each = F.normalize(enc.model.encode_text(tok([t.format("sketch") for t in templates])), dim=-1)
    want = F.normalize(each.mean(0), dim=-1)
    assert torch.allclose(got, want, atol=1e-6)
    assert abs(got.norm().item() - 1) < 1e-5
    calls = []
    monkeypatch.setattr(enc, "tokenize", lambda prompts: calls.append(prompts) or tok(prompts))
    enc.encode_text(["sketch"])
    assert calls == []  # served from the cache
    enc.encode_text(["neon"])
    assert len(calls) == 1


def test_unknown_words_only_for_closed_vocabularies(tiny_name):
    assert make_encoder(tiny_name).unknown_words("Pixar zombie") == []
    enc = make_encoder(tiny_name, vocab={"photo", "sketch", "of", "a"})
    assert enc.unknown_words("a sketch of a Zebra") == ["zebra"]


# ------------------------------------------------------------------------------------------
# Losses on constructed embeddings


def test_directional_loss_zero_when_aligned_two_when_opposite():
    src_t = F.normalize(torch.tensor([1.0, 0, 0, 0]), dim=0)
    tgt_t = F.normalize(torch.tensor([0.0, 1, 0, 0]), dim=0)
    d = text_direction(src_t, tgt_t)
    # unit embeddings whose difference is exactly along d: f0 = e - d/2, f1 = e + d/2, e ⟂ d
    e = torch.tensor([[0.0, 0, 1, 0], [0.0, 0, 0, 1]]) * (0.75 ** 0.5)
    f0, f1 = e - d / 2, e + d / 2
    assert torch.allclose(f0.norm(dim=-1), torch.ones(2)) and torch.allclose(f1.norm(dim=-1), torch.ones(2))
    assert directional_loss(f0, f1, d).abs().item() < 1e-6
    assert abs(directional_loss(f1, f0, d).item() - 2) < 1e-6
    # scale of the embeddings does not matter (they are normalised first)
    assert directional_loss(3 * f0, 0.5 * f1, d).abs().item() < 1e-6


def test_directional_loss_has_no_nan_for_identical_images():
    f0 = torch.randn(2, 8, requires_grad=True)
    d = F.normalize(torch.randn(8), dim=0)
    loss = directional_loss(f0.detach(), f0, d)
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - 1) < 1e-6
    assert torch.isfinite(f0.grad).all()


def test_global_norm_and_manifold_losses():
    t = F.normalize(torch.randn(16), dim=0)
    assert global_clip_loss(3 * t[None], t).abs().item() < 1e-6
    assert abs(global_clip_loss(-t[None], t).item() - 2) < 1e-6
    a = torch.randn(3, 16)
    assert embedding_norm_loss(a, 2 * a).item() == pytest.approx((a.norm(dim=-1) ** 2).mean().item(), rel=1e-5)
    s, g = F.normalize(torch.randn(16), dim=0), F.normalize(torch.randn(16), dim=0)
    # an edit that moves the image exactly as far as the texts are apart has zero angle loss
    assert manifold_angle_loss(s[None], g[None], s, g).item() < 1e-6


def test_angle_consistency_loss_against_pairwise_loop():
    torch.manual_seed(3)
    src, edit = torch.randn(5, 16), torch.randn(5, 16)
    terms = []
    for i in range(5):
        for j in range(5):
            if i != j:
                before = F.cosine_similarity(src[i], src[j], dim=0)
                after = F.cosine_similarity(edit[i], edit[j], dim=0)
                terms.append((before - after) ** 2)
    torch.testing.assert_close(angle_consistency_loss(src, edit), torch.stack(terms).mean())
    # an edit that keeps every pairwise angle (a rotation of the whole batch, rescaled) costs nothing
    rot, _ = torch.linalg.qr(torch.randn(16, 16))
    assert angle_consistency_loss(src, 3 * src @ rot).item() < 1e-10
    # moving every image to one look is what it penalises
    assert angle_consistency_loss(src, edit[:1].expand(5, -1)).item() > 0.1
    one = torch.randn(1, 16, requires_grad=True)
    loss = angle_consistency_loss(torch.randn(1, 16), one)
    loss.backward()
    assert loss.item() == 0 and one.grad is not None


def test_ensemble_weights_sum_losses(tiny_name):
    e1, e2 = make_encoder(tiny_name, seed=1), make_encoder(tiny_name, seed=2)
    img0, img1 = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    l1 = CLIPGuidance([e1]).directional_loss(img0, img1, "photo", "sketch")
    l2 = CLIPGuidance([e2]).directional_loss(img0, img1, "photo", "sketch")
    both = CLIPGuidance([e1, e2], [0.5, 2.0]).directional_loss(img0, img1, "photo", "sketch")
    assert torch.allclose(both, 0.5 * l1 + 2.0 * l2, atol=1e-6)
    g = CLIPGuidance([e1, e2], [1, 0]).global_loss(img1, "sketch")
    assert torch.allclose(g, CLIPGuidance([e1]).global_loss(img1, "sketch"))
    with pytest.raises(ValueError, match="weights"):
        CLIPGuidance([e1, e2], [1.0])


def test_image_direction_from_examples(tiny_name):
    enc = make_encoder(tiny_name)
    style = torch.rand(4, 3, 32, 32) * 2 - 1
    source = torch.rand(6, 3, 32, 32) * 2 - 1
    (d,) = CLIPGuidance([enc]).image_direction(style, source, batch=3)
    with torch.no_grad():
        s = F.normalize(enc.encode_image(style), dim=-1).mean(0)
        g = F.normalize(enc.encode_image(source), dim=-1).mean(0)
    assert torch.allclose(d, F.normalize(s - g, dim=0), atol=1e-5)


def test_download_clip_cli_reports_cached_and_fails_cleanly_offline(monkeypatch, capsys):
    from nada.cli import main

    monkeypatch.setattr(encoder_mod, "cached_weights", lambda spec: "/cache/ViT-B-32.pt")
    assert main(["download-clip", "ViT-B/32"]) == 0
    assert "already cached" in capsys.readouterr().out
    monkeypatch.setattr(encoder_mod, "cached_weights", lambda spec: None)

    def offline(spec):
        raise OSError("no route to host")

    monkeypatch.setattr(encoder_mod, "download_weights", offline)
    assert main(["download-clip", "ViT-B-32:openai"]) == 2
    assert "downloading ViT-B-32:openai failed" in capsys.readouterr().err
    assert main(["download-clip", "ViT-Q-99"]) == 2


def test_directional_loss_gradient_is_bounded_when_the_edit_is_tiny():
    """At the first step the twins agree to ~1e-7: an exactly normalised direction would give a
    ~1e7 gradient that freezes Adam for thousands of steps. Below DIRECTION_FLOOR the loss is
    linear in the edit, so the gradient stays of the order of a normal step's."""
    from nada.guidance.losses import DIRECTION_FLOOR

    torch.manual_seed(0)
    f0 = F.normalize(torch.randn(2, 16), dim=-1)
    d = F.normalize(torch.randn(16), dim=0)
    grads = {}
    for scale in (1e-7, 0.3):
        f1 = (f0 + scale * torch.randn(2, 16)).requires_grad_(True)
        directional_loss(f0, f1, d).backward()
        grads[scale] = f1.grad.norm().item()
    assert grads[1e-7] < 2 / DIRECTION_FLOOR
    # the exactly normalised direction would have a gradient ~1/|edit| ~ 1e6 here
    f1 = (f0 + 1e-7 * torch.randn(2, 16)).requires_grad_(True)
    delta = F.normalize(f1, dim=-1) - f0
    (1 - F.normalize(delta, dim=-1) @ d).mean().backward()
    assert f1.grad.norm().item() > 1e4 * grads[1e-7]
    # above the floor it is the exact official loss
    f1 = f0 + 0.3 * torch.randn(2, 16)
    delta = F.normalize(f1, dim=-1) - f0
    want = (1 - F.normalize(delta, dim=-1) @ d).mean()
    assert abs(directional_loss(f0, f1, d).item() - want.item()) < 1e-6


def test_patch_embed_equals_the_strided_convolution_it_replaces():
    """ViT patchify as a matmul: same values and image gradients as the conv, non-square and
    cropped inputs included; convs with padding, bias or overlap are left alone."""
    from torch import nn

    from nada.guidance.encoder import PatchEmbed

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 7, 4, stride=4, bias=False).double()
    assert PatchEmbed.replaces(conv)
    assert not PatchEmbed.replaces(nn.Conv2d(3, 7, 4, stride=2, bias=False))
    assert not PatchEmbed.replaces(nn.Conv2d(3, 7, 4, stride=4, bias=True))
    assert not PatchEmbed.replaces(nn.Conv2d(3, 7, 4, stride=4, padding=1, bias=False))
    pe = PatchEmbed(conv)
    assert list(pe.state_dict()) == ["weight"] and pe.weight is conv.weight
    for shape in [(2, 3, 16, 16), (1, 3, 18, 13)]:
        x = torch.randn(*shape, dtype=torch.double, requires_grad=True)
        a, b = pe(x), conv(x)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(b)
        torch.testing.assert_close(torch.autograd.grad(a, x, g)[0], torch.autograd.grad(b, x, g)[0],
                                   rtol=1e-12, atol=1e-12)


def test_self_attention_equals_multihead_attention_and_falls_back_otherwise():
    """Self-attention rewritten around SDPA: values and gradients of nn.MultiheadAttention, with
    and without an additive mask; cross-attention and boolean masks use the module itself."""
    from torch import nn

    from nada.guidance.encoder import SelfAttention

    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).double()
    assert SelfAttention.replaces(mha) and not SelfAttention.replaces(nn.MultiheadAttention(16, 4))
    sa = SelfAttention(mha)
    assert sorted(sa.state_dict()) == sorted(mha.state_dict())
    x = torch.randn(3, 7, 16, dtype=torch.double, requires_grad=True)
    causal = torch.full((7, 7), float("-inf"), dtype=torch.double).triu(1)
    for mask in (None, causal):
        a = sa(x, x, x, need_weights=False, attn_mask=mask)[0]
        b = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        g = torch.randn_like(a)
        torch.testing.assert_close(torch.autograd.grad(a, x, g)[0], torch.autograd.grad(b, x, g)[0],
                                   rtol=1e-10, atol=1e-12)
    y = torch.randn(3, 5, 16, dtype=torch.double)
    torch.testing.assert_close(sa(x, y, y)[0], mha(x, y, y, need_weights=False)[0])
    boolean = torch.ones(7, 7, dtype=torch.bool).triu(1)
    torch.testing.assert_close(sa(x, x, x, attn_mask=boolean)[0], mha(x, x, x, need_weights=False, attn_mask=boolean)[0])


def test_shapes_clip_features_unchanged_by_the_faster_towers():
    """The shipped shapes CLIP as loaded (towers swapped) against open_clip's own modules."""
    from nada.guidance import load_clip
    from nada.guidance.encoder import PatchEmbed, SelfAttention
    from nada.guidance.preprocess import clip_preprocess
    from nada.shapes.clip_model import fine_dir, load_shapes_clip

    enc = load_clip("shapes-fine", torch.device("cpu"))
    assert isinstance(enc.model.visual.conv1, PatchEmbed)
    assert sum(isinstance(m, SelfAttention) for m in enc.model.modules()) >= 3
    raw = load_shapes_clip(path=fine_dir()).model.eval()
    assert not any(isinstance(m, (PatchEmbed, SelfAttention)) for m in raw.modules())
    img = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        want = raw.encode_image(clip_preprocess(img, enc.image_size, enc.mean, enc.std)).float()
        got = enc.encode_image(img)
        tokens = enc.tokenize(["a sketch of a star"])
        torch.testing.assert_close(enc.model.encode_text(tokens), raw.encode_text(tokens), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
