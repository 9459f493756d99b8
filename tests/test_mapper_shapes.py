"""A short latent-mapper run on the shapes world moves the oracle's colour reading of edited
images toward the target, and keeps what it should (the full-length figures: docs/mapper.md)."""

from __future__ import annotations


from nada.mapper import MapperConfig, evaluate_mapper, load_mapper, train_mapper


def test_short_mapper_run_moves_colours_toward_blue(tmp_path):
    cfg = MapperConfig(out=str(tmp_path / "run"), target="blue", steps=80, num_latents=128, sample_every=0,
                       save_every=0, evaluate=False, quiet=True, device="cpu",
                       lr_final=1.0)  # constant lr: 80 annealed steps would barely start the edit
    result = train_mapper(cfg)
    loaded = load_mapper(result.mapper_path)
    from nada.checkpoints import load_generator
    from nada.hub import resolve_generator

    G = load_generator(resolve_generator("shapes")).generator
    untrained = evaluate_mapper(G, loaded.mapper, "blue", seeds=range(64), strength=0.0)
    m = evaluate_mapper(G, loaded.mapper, "blue", seeds=range(64), strength=0.3)  # the edit, amplified
    assert untrained["target_share_after"] == untrained["target_share_before"]  # strength 0: no edit
    assert m["target_share_after"] >= m["target_share_before"] + 0.25, m
    assert m["style_kept"] >= 0.95 and m["shape_kept"] >= 0.75, m
