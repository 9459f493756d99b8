"""nada.adapt: config validation, twin generator, adaptive layer selection, the training loop's
invariants (frozen twin and mapping never change, only chosen layers learn), bit-for-bit resume.

A tiny random generator and a stand-in CLIP (fixed random projection of pooled pixels, same
ClipEncoder contract) keep these fast; the real CLIP path is in tests/test_train_cli.py."""

from __future__ import annotations

import json
import zlib

import pytest
import torch
import torch.nn.functional as F

from nada.adapt import TrainConfig, TwinGenerator, resolve_k, select_layers, train
from nada.adapt.layers import candidate_indices, names_for_indices, set_trainable
from nada.adapt.objective import ClipObjective
from nada.checkpoints import load_generator, save_generator
from nada.errors import ConfigError
from nada.networks import Generator, GeneratorConfig


def tiny_cfg() -> GeneratorConfig:
    return GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)


class StandInEncoder:
    """A fixed random 'CLIP': features = pooled pixels @ W; texts hash to fixed vectors."""

    def __init__(self, dim: int = 24, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(3 * 4 * 4, dim, generator=g)
        self.dim = dim

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(img.float(), 4).flatten(1)
        return torch.tanh(x @ self.proj) * 3

    def encode_text(self, texts):
        out = []
        for t in texts:
            g = torch.Generator().manual_seed(zlib.crc32(t.encode()))
            out.append(F.normalize(torch.randn(self.dim, generator=g), dim=-1))
        return torch.stack(out)

    def unknown_words(self, text):
        return []


def objective(target="sketch"):
    return ClipObjective([StandInEncoder(seed=0), StandInEncoder(seed=1)], [1.0, 0.5], "photo", target)


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(tiny_cfg()).eval()
    path = tmp_path_factory.mktemp("gen") / "tiny.safetensors"
    save_generator(G, path)
    return path


def run_cfg(gen_path, out, **kw):
    base = dict(out=str(out), generator=str(gen_path), clip=("standin",), target="sketch", iters=3,
                sample_every=2, save_every=2, sample_seeds="0-3", quiet=True, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


# --- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, words", [
    (dict(iters=0), "iters"),
    (dict(iters=-3), "iters"),
    (dict(batch=0), "batch"),
    (dict(target=None), "--target"),
    (dict(style_images="x"), "exactly one"),
    (dict(clip=("a", "b"), clip_weights=(1.0,)), "clip weights"),
    (dict(auto_layer_k="zero"), "auto-layer-k"),
    (dict(auto_layer_k=0), "auto-layer-k"),
    (dict(mixing=1.5), "mixing"),
    (dict(lr_final=1.5), "lr-final"),
    (dict(lr_final=-0.1), "lr-final"),
    (dict(lambda_direction=0.0), "loss weights"),
    (dict(preset="nope"), "preset"),
])
def test_config_rejects_bad_values(kw, words):
    base = dict(target="sketch")
    base.update(kw)
    with pytest.raises(ConfigError) as exc:
        TrainConfig(**base)
    assert words in str(exc.value)
    assert "\n" not in str(exc.value)


def test_config_defaults_and_presets():
    cfg = TrainConfig(target="sketch")
    assert cfg.clip == ("shapes", "shapes-fine") and cfg.clip_weights == (1.0, 1.0)
    assert cfg.mixing == 0 and cfg.sample_truncation == 0.7
    # shapes world, nothing chosen about layers: texture layers, no search, batch 16, lr 0.03 (→ 0.01)
    assert (cfg.layers, cfg.auto_layer_iters, cfg.batch, cfg.lr) == ("texture", 0, 16, 0.03)
    assert cfg.adam_lr == pytest.approx(0.024) and cfg.adam_betas == (0.0, pytest.approx(0.99**0.8))
    real = TrainConfig(target="sketch", generator="ffhq-1024")
    assert real.clip == ("ViT-B-32:openai", "ViT-B-16:openai")
    # any other generator, or any choice about the layers: the official search over all conv layers
    assert (real.layers, real.auto_layer_iters, real.auto_layer_k, real.lr, real.batch) == (None, 1, 2, 0.002, 2)
    assert real.adam_lr == pytest.approx(0.0016)
    k3 = TrainConfig(target="sketch", auto_layer_k=3)
    assert (k3.layers, k3.auto_layer_iters, k3.auto_layer_k, k3.lr) == (None, 1, 3, 0.002)
    assert TrainConfig(target="sketch", lr=0.005).layers == "texture"  # an lr alone keeps the layer default
    assert TrainConfig(target="sketch", batch=4).batch == 4 and TrainConfig(target="sketch", batch=4).lr == 0.03
    assert TrainConfig.from_preset("paper", target="sketch").batch == 2
    assert TrainConfig.from_preset("paper", target="sketch").layers is None
    assert TrainConfig(target="sketch", layers="b8.*").auto_layer_iters == 0  # manual set: no search
    # the shapes default anneals the lr to a third (cosine); everything else keeps it constant
    assert cfg.lr_final == pytest.approx(1 / 3) and (real.lr_final, k3.lr_final) == (1.0, 1.0)
    assert cfg.lr_at(0) == 0.03 and cfg.lr_at(299) == pytest.approx(0.01) and cfg.lr_at(150) < 0.021
    assert TrainConfig(target="sketch", lr_final=1.0).lr_at(299) == 0.03
    shape = TrainConfig.from_preset("improve-shape", target="sketch")
    assert shape.mixing == 0.9 and shape.auto_layer_k == "2/3" and shape.preset == "improve-shape"
    assert TrainConfig.from_preset("improve-shape", target="x", mixing=0.1).mixing == 0.1  # explicit wins
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_resolve_k_follows_notebook_rule():
    assert resolve_k("2/3", 17, 18) == 12      # int(2·18/3) at 1024px
    assert resolve_k("2/3", 9, 10) == 6        # int(2·10/3) at 64px
    assert resolve_k("all", 9, 10) == 9
    assert resolve_k(50, 9, 10) == 9           # capped at the candidates


# --- twin and layer selection ---------------------------------------------------------------

def test_twin_shares_mapping_and_copies_synthesis():
    torch.manual_seed(0)
    G = Generator(tiny_cfg())
    twin = TwinGenerator(G)
    assert twin.mapping is G.mapping and twin.frozen is G.synthesis and twin.trainable is not G.synthesis
    assert all(torch.equal(a, b) for a, b in zip(twin.frozen.state_dict().values(), twin.trainable.state_dict().values()))
    assert not any(p.requires_grad for p in twin.parameters())
    view = twin.generator("trainable")
    assert view.mapping is twin.mapping and view.synthesis is twin.trainable


def test_twins_share_the_blocks_below_every_learnable_layer():
    torch.manual_seed(0)
    twin = TwinGenerator(Generator(tiny_cfg()))  # blocks 4, 8, 16
    assert twin.shared_until(["b16.conv0", "b16.torgb"]) == 8
    assert twin.shared_until(["b16.conv1", "b8.torgb"]) == 4   # b8's ToRGB is part of block 8
    assert twin.shared_until(["b4.conv1"]) is None
    assert twin.shared_until([]) == 8                          # the last block always runs twice
    gen = torch.Generator().manual_seed(1)
    ws, noise = twin.sample_ws(3, gen), twin.make_noise(3, gen)
    with torch.no_grad():
        twin.trainable.b16.conv1.weight.mul_(1.5)              # the twins differ above the split
    frozen, trained = twin.forward_pair(ws, noise, twin.shared_until(["b16.conv1"]))
    assert torch.equal(frozen, twin.forward_frozen(ws, noise))
    assert torch.equal(trained, twin.forward_trainable(ws, noise)) and not torch.equal(frozen, trained)
    with torch.no_grad():
        twin.trainable.b4.conv1.weight.add_(0.01)             # e.g. --train-generator: nothing shared
    assert twin.shared_until(["b16.conv1"]) is None


def test_shared_blocks_change_nothing_in_a_run(gen_path, tmp_path, monkeypatch):
    kw = dict(iters=3, layers="b16.*", batch=3, sample_every=0, save_every=0)
    shared = train(run_cfg(gen_path, tmp_path / "shared", **kw), objective())
    monkeypatch.setattr(TwinGenerator, "shared_until", lambda self, learnable: None)
    separate = train(run_cfg(gen_path, tmp_path / "separate", **kw), objective())
    a = load_generator(shared.generator_path).generator.state_dict()
    b = load_generator(separate.generator_path).generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and any(
        not torch.equal(a[k], v) for k, v in load_generator(gen_path).generator.state_dict().items())
    assert [r["loss"] for r in shared.history] == [r["loss"] for r in separate.history]


def test_select_layers_picks_k_and_computes_no_weight_grads():
    torch.manual_seed(0)
    twin = TwinGenerator(Generator(tiny_cfg()))
    layers = twin.layers()
    obj = objective()
    gen = torch.Generator().manual_seed(1)
    ws = twin.sample_ws(4, gen)
    cands = candidate_indices(layers)
    assert cands == list(range(twin.num_ws - 1))  # the last index feeds only the final ToRGB
    for k in (1, 3, len(cands)):
        idx, scores = select_layers(twin.trainable, ws, obj.global_loss, k, iters=2, candidates=cands)
        assert len(idx) == k and set(idx) <= set(cands)
        # independent formulation of the ranking: the k largest scores among the candidates
        ranked = sorted(cands, key=lambda i: -float(scores[i]))[:k]
        assert sorted(ranked) == idx
    assert all(p.grad is None for p in twin.trainable.parameters())
    assert not any(p.requires_grad for p in twin.trainable.parameters())
    # the weight-gradient variant costs more but picks the same indices
    idx_w, scores_w = select_layers(twin.trainable, ws, obj.global_loss, 2, iters=2, candidates=cands, weight_grads=True)
    idx_n, scores_n = select_layers(twin.trainable, ws, obj.global_loss, 2, iters=2, candidates=cands)
    assert idx_w == idx_n and torch.allclose(scores_w, scores_n)
    names = names_for_indices(layers, idx_n)
    assert names and not any(n.endswith("torgb") for n in names)
    assert {r.w_index for r in layers if r.name in names} == set(idx_n)


def test_only_selected_layers_receive_gradients():
    torch.manual_seed(0)
    twin = TwinGenerator(Generator(tiny_cfg()))
    layers = twin.layers()
    names = names_for_indices(layers, [2])
    params = set_trainable(twin.trainable, layers, names)
    gen = torch.Generator().manual_seed(0)
    ws = twin.sample_ws(2, gen)
    loss = objective().losses(twin.forward_frozen(ws), twin.forward_trainable(ws), {"direction": 1.0})["direction"]
    loss.backward()
    with_grad = {n for n, p in twin.trainable.named_parameters() if p.grad is not None}
    expected = {f"{ref.name}.{pn}" for ref in layers if ref.name in names for pn, _ in ref.module.named_parameters()}
    assert with_grad == expected and len(params) == len(expected)
    assert all(p.grad is None for p in twin.frozen.parameters()) and all(p.grad is None for p in twin.mapping.parameters())


# --- training runs --------------------------------------------------------------------------

def test_training_changes_only_chosen_layers_and_writes_run_dir(gen_path, tmp_path):
    cfg = run_cfg(gen_path, tmp_path / "run", auto_layer_k=2, auto_layer_batch=2)
    result = train(cfg, objective())
    out = tmp_path / "run"
    assert result.iterations == 3 and not result.interrupted
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [1, 2, 3]
    assert all(len(r["w_indices"]) == 2 and r["layers"] for r in records)
    assert json.loads((out / "config.json").read_text())["auto_layer_k"] == 2
    assert {p.name for p in (out / "samples").iterdir()} == {"iter_000002.png", "iter_000003.png", "final.png"}
    assert (out / "checkpoints" / "iter_000002.safetensors").is_file()
    assert (out / "checkpoints" / "resume.pt").is_file()
    source = load_generator(gen_path).generator
    adapted = load_generator(out / "generator.safetensors").generator
    ros = load_generator(out / "generator_rosinality.pt").generator
    src, ada = source.state_dict(), adapted.state_dict()
    # mapping (shared, frozen) never changes; only layers some step chose differ from the source
    chosen = {n for r in records for n in r["layers"]}
    for key in src:
        changed = not torch.equal(src[key], ada[key])
        layer = ".".join(key.split(".")[1:3])
        if key.startswith("mapping.") or layer not in chosen:
            assert not changed, key
    assert any(not torch.equal(src[k], ada[k]) for k in src)
    assert all(torch.equal(ada[k], v) for k, v in ros.state_dict().items())


def test_frozen_twin_never_changes(gen_path, tmp_path):
    from nada.adapt.trainer import Trainer, prepare
    from nada.adapt import rundir

    cfg = run_cfg(gen_path, tmp_path / "run", auto_layer_iters=0, iters=2, sample_every=0, save_every=0)
    prep = prepare(cfg, objective())
    before_frozen = {k: v.clone() for k, v in prep.twin.frozen.state_dict().items()}
    before_map = {k: v.clone() for k, v in prep.twin.mapping.state_dict().items()}
    Trainer(prep, rundir.create_run_dir(prep.cfg)).run()
    assert all(torch.equal(before_frozen[k], v) for k, v in prep.twin.frozen.state_dict().items())
    assert all(torch.equal(before_map[k], v) for k, v in prep.twin.mapping.state_dict().items())
    assert any(not torch.equal(before_frozen[k], v) for k, v in prep.twin.trainable.state_dict().items())


@pytest.mark.parametrize("every, patch", [(1, 0.0), (3, 0.0), (1, 0.5)])
def test_resume_equals_uninterrupted(gen_path, tmp_path, every, patch):
    # every=3: the layer choice made before the stop is reused after it; patch: the patch
    # positions come from the run's RNG, which the checkpoint restores
    kw = dict(iters=4, mixing=0.5, auto_layer_k=2, auto_layer_batch=2, sample_every=0, save_every=0,
              auto_layer_every=every, lambda_patch=patch)
    full = train(run_cfg(gen_path, tmp_path / "full", **kw), objective())
    part = train(run_cfg(gen_path, tmp_path / "part", **{**kw, "iters": 2}), objective())
    assert part.iterations == 2
    (tmp_path / "part").rename(tmp_path / "moved")  # a moved run directory resumes where it is now
    resumed = train(run_cfg(gen_path, tmp_path / "moved", resume=True, iters=4), objective())
    assert resumed.iterations == 4 and resumed.run_dir == tmp_path / "moved"
    a = load_generator(full.generator_path).generator.state_dict()
    b = load_generator(resumed.generator_path).generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "moved" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rs]  # noqa: E731
    assert strip(la) == strip(lb)


def test_cosine_lr_schedule_is_used_and_resumes_exactly(gen_path, tmp_path, monkeypatch):
    import math

    from nada.adapt.trainer import Trainer

    kw = dict(iters=5, lr=0.01, lr_final=0.1, layers="b8.*", sample_every=0, save_every=0)
    full = train(run_cfg(gen_path, tmp_path / "full", **kw), objective())
    records = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    expected = [0.01 * (0.1 + 0.9 * (1 + math.cos(math.pi * i / 4)) / 2) for i in range(5)]
    assert [r["lr"] for r in records] == pytest.approx(expected)
    assert records[0]["lr"] == pytest.approx(0.01) and records[-1]["lr"] == pytest.approx(0.001)
    # the optimiser really runs at it: Adam without momentum moves each weight with a nonzero
    # gradient by lr·4/5 on its first step
    one = train(run_cfg(gen_path, tmp_path / "one", **{**kw, "iters": 1}), objective())
    src = load_generator(gen_path).generator.synthesis.b8.conv0.weight
    moved = (load_generator(one.generator_path).generator.synthesis.b8.conv0.weight - src).abs()
    assert float(moved.max()) == pytest.approx(0.008, rel=1e-3)
    # stopped at iteration 2 as Ctrl-C stops it, then resumed: the same weights and records
    step = Trainer.step

    def stop_after_two(self):
        record = step(self)
        self.ctrl_c.requested = self.iteration == 2
        return record

    monkeypatch.setattr(Trainer, "step", stop_after_two)
    part = train(run_cfg(gen_path, tmp_path / "part", **kw), objective())
    assert part.interrupted and part.iterations == 2
    monkeypatch.setattr(Trainer, "step", step)
    resumed = train(run_cfg(gen_path, tmp_path / "part", resume=True, iters=5), objective())
    a = load_generator(full.generator_path).generator.state_dict()
    b = load_generator(resumed.generator_path).generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in again] == [r["lr"] for r in records]


def test_run_dir_rules(gen_path, tmp_path):
    out = tmp_path / "run"
    train(run_cfg(gen_path, out, iters=1), objective())
    with pytest.raises(ConfigError, match="already exists"):
        train(run_cfg(gen_path, out, iters=1), objective())
    train(run_cfg(gen_path, out, iters=1, overwrite=True), objective())
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a nada run"):
        train(run_cfg(gen_path, other, iters=1, overwrite=True), objective())
    assert (other / "thesis.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="not a nada run directory"):
        train(run_cfg(gen_path, tmp_path / "fresh", resume=True), objective())


def test_errors_before_any_work(gen_path, tmp_path):
    out = tmp_path / "never"
    from nada.errors import CheckpointError, DataError

    with pytest.raises(CheckpointError):
        train(run_cfg(gen_path, out, generator=str(tmp_path / "missing.pt")), objective())
    with pytest.raises(ConfigError, match="unknown layer"):
        train(run_cfg(gen_path, out, layers="b999.conv0"), objective())
    empty = tmp_path / "styles"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        train(run_cfg(gen_path, out, target=None, style_images=str(empty)), objective())
    assert not out.exists()


def test_style_images_direction_and_bad_file(tmp_path):
    import numpy as np
    from PIL import Image

    from nada.adapt.objective import load_style_images
    from nada.errors import DataError

    folder = tmp_path / "styles"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / "b.jpg")
    style = load_style_images(str(folder))
    assert style.shape == (2, 3, 20, 20) and style.min() >= -1 and style.max() <= 1
    enc = StandInEncoder()
    source = torch.zeros(3, 3, 16, 16)
    obj = ClipObjective.from_style_images([enc], [1.0], "photo", style, source)
    # independent formulation: normalised mean style embedding minus normalised mean source embedding
    e_style = F.normalize(enc.encode_image(style), dim=-1).mean(0)
    e_src = F.normalize(enc.encode_image(source), dim=-1).mean(0)
    assert torch.allclose(obj.direction[0], F.normalize(e_style - e_src, dim=-1), atol=1e-6)
    # moving the images along the direction lowers the loss; identical images give 1 (cosine 0), no NaN
    same = obj.losses(source[:2], source[:2], {"direction": 1.0})["direction"]
    assert torch.isfinite(same) and float(same) == pytest.approx(1.0)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_style_images(str(folder))


def test_shapes_world_run_ends_with_eval(tmp_path, monkeypatch):
    """The default generator ('shapes') resolves through pretrained/ and, since its recipe names
    the shapes oracle, the run ends with the oracle evaluation (eval.json + table); random
    stand-in models keep it fast."""
    from nada.shapes.oracle import OracleNet, save_oracle

    pre = tmp_path / "pretrained"
    torch.manual_seed(0)
    save_generator(Generator(GeneratorConfig.preset("shapes-64")), pre / "shapes_generator.safetensors",
                   metadata={"nada_recipe": {"evaluator": "shapes"}})
    save_oracle(OracleNet(), pre)
    monkeypatch.setenv("NADA_PRETRAINED", str(pre))
    cfg = TrainConfig(out=str(tmp_path / "run"), target="neon", iters=1, eval_seeds=8, auto_layer_batch=2,
                      sample_every=0, save_every=0, sample_seeds="0", quiet=True, device="cpu")
    result = train(cfg, objective("neon"))
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["target"] == "neon" and saved["n"] == 8 and result.eval == saved
    assert "target attainment" in result.eval_table
    with pytest.raises(ConfigError, match="names no style"):  # checked before any work
        train(cfg.replace(out=str(tmp_path / "run2"), target="teapot"), objective("teapot"))
    assert not (tmp_path / "run2").exists()


def test_consistency_term_is_the_weighted_angle_consistency_of_each_encoder():
    from nada.guidance.losses import angle_consistency_loss

    obj = objective()
    g = torch.Generator().manual_seed(5)
    frozen, edited = torch.rand(2, 4, 3, 16, 16, generator=g) * 2 - 1
    terms = obj.losses(frozen, edited, {"direction": 1.0, "consistency": 1.0})
    expect = sum(w * angle_consistency_loss(enc.encode_image(frozen), enc.encode_image(edited))
                 for enc, w in zip(obj.encoders, obj.weights))
    torch.testing.assert_close(terms["consistency"], expect)
    assert terms["consistency"].item() > 0
    assert obj.losses(frozen, frozen.clone(), {"consistency": 1.0})["consistency"].item() < 1e-10


def test_patch_term_is_the_directional_loss_on_matching_crops():
    from nada.guidance.losses import directional_loss, random_patches
    from nada.adapt.objective import PATCH_FRACTION, PATCHES_PER_IMAGE

    obj = objective()
    g = torch.Generator().manual_seed(3)
    frozen, edited = torch.rand(2, 3, 3, 16, 16, generator=g) * 2 - 1
    terms = obj.losses(frozen, edited, {"direction": 1.0, "patch": 1.0}, rng=torch.Generator().manual_seed(7))
    src, ed = random_patches(frozen, edited, PATCHES_PER_IMAGE, PATCH_FRACTION, torch.Generator().manual_seed(7))
    assert src.shape == (3 * PATCHES_PER_IMAGE, 3, 8, 8)
    expect = sum(w * directional_loss(enc.encode_image(src), enc.encode_image(ed), d)
                 for enc, w, d in zip(obj.encoders, obj.weights, obj.direction))
    torch.testing.assert_close(terms["patch"], expect)
    # crops sit at the same places in both batches: an unchanged image gives the "no edit" loss 1
    same = obj.losses(frozen, frozen.clone(), {"patch": 1.0}, rng=torch.Generator().manual_seed(7))["patch"]
    torch.testing.assert_close(same, torch.tensor(1.5))  # weights 1 + 0.5, distance 1 each
    # the term trains: its gradient reaches the edited images
    edited.requires_grad_(True)
    obj.losses(frozen, edited, {"patch": 1.0}, rng=torch.Generator().manual_seed(7))["patch"].backward()
    assert edited.grad.abs().sum() > 0
