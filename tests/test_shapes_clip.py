"""The shapes CLIP: word tokenizer, save/load round trip, and (once shipped) smaller-sample thresholds."""

from __future__ import annotations

import logging

import pytest
import torch

from nada.errors import CheckpointError
from nada.shapes.clip_model import (DEFAULT_DIR, META_NAME, WEIGHTS_NAME, ShapesClipConfig, WordTokenizer, build_model,
                                    load_shapes_clip, measure_shapes_clip, save_shapes_clip, world_words)
from nada.shapes.renderer import COLOURS, SHAPES, STYLES

SHIPPED = (DEFAULT_DIR / WEIGHTS_NAME).is_file()


def test_tokenizer_maps_words_unknowns_and_truncates():
    tok = WordTokenizer(world_words(), context_length=6)
    ids = tok(["A Pixel-Art red star", "zebra"])
    sot, eot, unk = tok.stoi["<sot>"], tok.stoi["<eot>"], tok.stoi["<unk>"]
    assert ids[0].tolist() == [sot, tok.stoi["a"], tok.stoi["pixel"], tok.stoi["art"], tok.stoi["red"], eot]  # cut to fit
    assert ids[1].tolist() == [sot, unk, eot, 0, 0, 0]
    assert tok.unknown_words("a zebra star") == ["zebra"]
    for phrase in (*STYLES, *SHAPES, *COLOURS):
        assert not tok.unknown_words(phrase)


def test_save_load_round_trip(tmp_path):
    cfg = ShapesClipConfig(vision_width=32, text_width=32, embed_dim=16, heads=2, vision_layers=1, text_layers=1,
                           patch_size=16, context_length=8)
    tok = WordTokenizer(world_words(), cfg.context_length)
    torch.manual_seed(0)
    model = build_model(cfg, tok.vocab_size).eval()
    save_shapes_clip(model, cfg, tok, tmp_path)
    clip = load_shapes_clip(path=tmp_path)
    x = torch.randn(3, 3, 64, 64)
    t = tok(["neon star", "a red heart", "photo"])
    with torch.no_grad():
        # fp16 storage: outputs agree up to half-precision rounding of the weights
        assert torch.allclose(clip.model.encode_image(x), model.half().float().encode_image(x), atol=1e-4)
        assert torch.allclose(clip.model.encode_text(clip.tokenize(["neon star", "a red heart", "photo"])),
                              model.encode_text(t), atol=1e-4)
    assert clip.image_size == 64 and clip.vocab == set(world_words())


def test_shapes_folder_spec_guides_with_that_model(tmp_path):
    """``shapes:DIR`` loads a shapes CLIP written by the training script through the guidance layer."""
    from nada.errors import ModelNotFoundError
    from nada.guidance import load_clip, parse_spec
    from nada.guidance import encoder as encoder_mod

    cfg = ShapesClipConfig(vision_width=32, text_width=32, embed_dim=16, heads=2, vision_layers=1, text_layers=1,
                           patch_size=8, context_length=8)
    tok = WordTokenizer(world_words(), cfg.context_length)
    torch.manual_seed(1)
    model = build_model(cfg, tok.vocab_size).eval()
    save_shapes_clip(model, cfg, tok, tmp_path / "mine")
    encoder_mod.clear_cache()
    try:
        enc = load_clip(f"shapes:{tmp_path / 'mine'}", "cpu")
        assert enc.spec == f"shapes:{tmp_path / 'mine'}" and enc.spec == parse_spec(enc.spec).canonical
        img = torch.rand(2, 3, 64, 64) * 2 - 1  # nada images in [-1, 1]; the shapes CLIP's mean/std are 0.5
        with torch.no_grad():
            assert torch.allclose(enc.encode_image(img), model.half().float().encode_image(img), atol=1e-4)
        assert load_clip("shapes", "cpu") is not enc  # the embedded model stays its own entry
        assert enc.unknown_words("neon zebra") == ["zebra"]
    finally:
        encoder_mod.clear_cache()
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(ModelNotFoundError, match="not a shapes CLIP folder") as err:
            parse_spec(f"shapes:{bad}")
        assert "train_shapes_clip.py" in err.value.hint


def test_missing_weights_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_shapes_clip(path=tmp_path)


def test_unknown_word_warns(tmp_path, caplog):
    cfg = ShapesClipConfig(vision_width=32, text_width=32, embed_dim=16, heads=2, vision_layers=1, text_layers=1,
                           patch_size=16, context_length=8)
    tok = WordTokenizer(world_words(), cfg.context_length)
    save_shapes_clip(build_model(cfg, tok.vocab_size), cfg, tok, tmp_path)
    clip = load_shapes_clip(path=tmp_path)
    with caplog.at_level(logging.WARNING):
        clip.tokenize(["a zebra"])
    assert "zebra" in caplog.text


@pytest.fixture(scope="module")
def shipped_metrics():
    if not SHIPPED:
        pytest.skip("pretrained/shapes_clip not shipped yet")
    clip = load_shapes_clip()
    assert isinstance(clip.model, __import__("open_clip").CLIP)
    return measure_shapes_clip(clip, n=240, seed=4242)


def test_shipped_model_knows_styles_and_style_directions(shipped_metrics):
    m = shipped_metrics
    assert m["style_acc"] >= 0.95, m
    assert m["direction_cos_min"] >= 0.5, m["direction_cos"]


def test_shipped_model_knows_shapes_and_colours(shipped_metrics):
    m = shipped_metrics
    assert m["shape_acc"] >= 0.90, m
    assert m["colour_acc"] >= 0.85, m
