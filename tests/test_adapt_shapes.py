"""A short NADA run on the embedded shapes world moves the oracle's style distribution toward
the target (skipped until the shapes models are in pretrained/)."""

from __future__ import annotations

import pytest
import torch

from nada.errors import NadaError


def _shapes_models_or_skip():
    try:
        from nada.guidance import load_clip
        from nada.hub import shapes_generator_path
        from nada.shapes.oracle import load_oracle

        shapes_generator_path()
        oracle = load_oracle()
        load_clip("shapes", torch.device("cpu"))
    except (ImportError, NadaError) as exc:
        pytest.skip(f"shapes models not available: {exc}")
    return oracle


def test_short_run_moves_oracle_style_toward_target(tmp_path):
    oracle = _shapes_models_or_skip()
    from nada.adapt import TrainConfig, train
    from nada.checkpoints import load_generator
    from nada.shapes.evaluate import generate, latents
    from nada.shapes.renderer import STYLES

    result = train(TrainConfig(out=str(tmp_path / "run"), target="pixel art", iters=60, auto_layer_k=5, lr=0.003, sample_every=0,
                               save_every=0, evaluate=False, quiet=True, device="cpu"))
    from nada.hub import shapes_generator_path

    G0 = load_generator(shapes_generator_path()).generator
    G1 = load_generator(result.generator_path).generator
    z = latents(range(32), G0.z_dim)
    target = STYLES.index("pixel art")
    p0 = oracle.predict(generate(G0, z))["style_prob"][:, target].mean()
    p1 = oracle.predict(generate(G1, z))["style_prob"][:, target].mean()
    assert p1 > p0 + 0.05, (float(p0), float(p1))
