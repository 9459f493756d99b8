"""The shapes CLIP: word tokenizer, save/load round trip, and (once shipped) smaller-sample thresholds."""

from __future__ import annotations

import logging

import pytest
import torch

from nada.errors import CheckpointError
from nada.shapes.clip_model import (default_dir, fine_dir, META_NAME, WEIGHTS_NAME, ShapesClipConfig, WordTokenizer, build_model,
                                    load_shapes_clip, measure_shapes_clip, save_shapes_clip, world_words)
from nada.shapes.renderer import COLOURS, SHAPES, STYLES

SHIPPED = (default_dir() / WEIGHTS_NAME).is_file()


def test_tokenizer_maps_words_unknowns_and_truncates():
    tok = WordTokenizer(world_words(), context_length=6)
    ids = tok(["A Pixel-Art red star", "zebra"])
    sot, eot, unk = tok.stoi["<sot>"], tok.stoi["<eot>"], tok.stoi["<unk>"]
    assert ids[0].tolist() == [sot, tok.stoi["a"], tok.stoi["pixel"], tok.stoi["art"], tok.stoi["red"], eot]  # cut to fit
    assert ids[1].tolist() == [sot, unk, eot, 0, 0, 0]
    assert tok.unknown_words("a zebra star") == ["zebra"]
    for phrase in (*STYLES, *SHAPES, *COLOURS):
        assert not tok.unknown_words(phrase)


def _saved_tiny_clip(folder, patch_size: int, seed: int):
    """A tiny random shapes CLIP written to ``folder``; returns (model, tokenizer)."""
    cfg = ShapesClipConfig(vision_width=32, text_width=32, embed_dim=16, heads=2, vision_layers=1, text_layers=1,
                           patch_size=patch_size, context_length=8)
    tok = WordTokenizer(world_words(), cfg.context_length)
    torch.manual_seed(seed)
    model = build_model(cfg, tok.vocab_size).eval()
    save_shapes_clip(model, cfg, tok, folder)
    return model, tok


def test_save_load_round_trip(tmp_path):
    model, tok = _saved_tiny_clip(tmp_path, 16, 0)
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

    model, _ = _saved_tiny_clip(tmp_path / "mine", 8, 1)
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


@pytest.fixture(scope="module", params=["shapes_clip", "shapes_clip_fine"])
def shipped_metrics(request):
    """Both shipped shapes CLIPs (16 px and 8 px patches), on renders the training never drew."""
    folder = default_dir() if request.param == "shapes_clip" else fine_dir()
    if not (folder / WEIGHTS_NAME).is_file():
        pytest.skip(f"pretrained/{request.param} not shipped")
    clip = load_shapes_clip(path=None if folder == default_dir() else folder)
    assert isinstance(clip.model, __import__("open_clip").CLIP)
    assert clip.config.patch_size == (16 if folder == default_dir() else 8)
    return measure_shapes_clip(clip, n=240, seed=4242)


def test_fine_spec_loads_the_shipped_8px_model():
    from nada.guidance import load_clip, parse_spec
    from nada.guidance import encoder as encoder_mod

    if not (fine_dir() / WEIGHTS_NAME).is_file():
        pytest.skip("pretrained/shapes_clip_fine not shipped")
    assert parse_spec("shapes-fine").canonical == "shapes-fine"
    encoder_mod.clear_cache()
    try:
        fine, coarse = load_clip("shapes-fine", "cpu"), load_clip("shapes", "cpu")
        assert fine.spec == "shapes-fine" and coarse.spec == "shapes" and fine is not coarse
        direct = load_shapes_clip(path=fine_dir())
        img = torch.rand(2, 3, 64, 64) * 2 - 1
        with torch.no_grad():
            assert torch.allclose(fine.encode_image(img), direct.model.encode_image(img), atol=1e-5)
            assert not torch.allclose(fine.encode_image(img), coarse.encode_image(img), atol=1e-2)
    finally:
        encoder_mod.clear_cache()


def test_shipped_model_knows_styles_and_style_directions(shipped_metrics):
    m = shipped_metrics
    assert m["style_acc"] >= 0.95, m
    assert m["direction_cos_min"] >= 0.5, m["direction_cos"]


def test_shipped_model_knows_shapes_and_colours(shipped_metrics):
    m = shipped_metrics
    assert m["shape_acc"] >= 0.90, m
    assert m["colour_acc"] >= 0.85, m
