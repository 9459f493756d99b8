"""Alignment: the FFHQ crop square worked out by hand for an upright face and rotating with the
face; the quad warp; the centre crop; the fallback (no dlib / no landmark file) is one warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from nada.errors import ConfigError
from nada.invert.align import align, ffhq_quad, resolve_mode, warp_quad
from nada.invert.images import centre_crop


def _face(eyes=((40.0, 50.0), (60.0, 50.0)), mouth=((42.0, 80.0), (58.0, 80.0))) -> np.ndarray:
    lm = np.zeros((68, 2))
    lm[36:42] = eyes[0]
    lm[42:48] = eyes[1]
    lm[48], lm[54] = mouth
    return lm


def test_ffhq_quad_of_an_upright_face_by_hand():
    # eyes 20 px apart at y=50, mouth 30 px below: side = max(2*20, 1.8*30) = 54 either way of the
    # centre (50, 50 + 0.1*30), axis-aligned
    quad = ffhq_quad(_face())
    assert np.allclose(quad, [[-4, -1], [-4, 107], [104, 107], [104, -1]])


def test_ffhq_quad_turns_with_the_face():
    lm = _face()
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pivot = np.array([50.0, 60.0])
    turned = (lm - pivot) @ rot.T + pivot
    assert np.allclose(ffhq_quad(turned), (ffhq_quad(lm) - pivot) @ rot.T + pivot)
    with pytest.raises(ValueError):
        ffhq_quad(lm[:5])


def test_warp_of_the_whole_image_is_a_resize_and_centre_crop_takes_the_middle():
    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), 8, 0), 8, 1)  # 64 px blocks
    quad = np.array([[0, 0], [0, 64], [64, 64], [64, 0]], float)
    out = warp_quad(img, quad, 32)
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - img[::2, ::2].astype(int)).mean() < 8
    wide = np.zeros((40, 100, 3), np.uint8)
    wide[:, 30:70] = 200
    assert (centre_crop(wide, 40) == 200).all()


def test_modes_and_the_fallback_warning(caplog, monkeypatch):
    assert resolve_mode("auto", "ffhq-1024") == "face"
    assert resolve_mode("auto", "runs/metfaces-pixar/generator.safetensors") == "face"
    assert resolve_mode("auto", "shapes") == "crop" and resolve_mode("auto", None) == "crop"
    assert resolve_mode("crop", "ffhq-1024") == "crop"
    with pytest.raises(ConfigError):
        resolve_mode("sideways", None)
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *a, **k):
        if name == "dlib":
            raise ImportError("no dlib")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    img = np.random.default_rng(1).integers(0, 255, (50, 80, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING):
        out, how = align(img, 32, "face", "me.jpg")
    assert how == "centre crop (no dlib)" and np.array_equal(out, centre_crop(img, 32))
    assert len([r for r in caplog.records if "dlib" in r.getMessage()]) == 1
    assert "me.jpg" in caplog.text
