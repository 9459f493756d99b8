"""nada.mapper: level slices, the levels mapper against an independent formula, losses, the
file format, fit checks, bit-for-bit resume, bad input, and the CLI. A tiny 16 px generator with
the real shapes CLIP keeps the runs short; tests/test_mapper_shapes.py runs the shapes world."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from nada.checkpoints import save_generator
from nada.cli import main as cli
from nada.errors import CheckpointError, ConfigError, DataError, NadaError
from nada.hooks import RunHooks
from nada.layer_groups import mapper_slices
from nada.mapper import (
    LevelsMapper, MapperArch, MapperConfig, check_fits, load_latents, load_mapper, save_latents, save_mapper,
    train_mapper,
)
from nada.mapper.losses import MapperObjective, latent_l2
from nada.networks import Generator, GeneratorConfig


def tiny_generator(seed: int = 0, res: int = 16) -> Generator:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(img_resolution=res, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    return Generator(cfg).eval()


@pytest.fixture(scope="module")
def gen_paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("gens")
    paths = {}
    for name, seed, res in (("a", 0, 16), ("b", 1, 16), ("big", 2, 32)):
        paths[name] = save_generator(tiny_generator(seed, res), d / f"{name}.safetensors")
    return paths


def cfg_for(gen, out, **kw):
    base = dict(out=str(out), generator=str(gen), clip=("shapes",), target="blue", steps=4, batch=3,
                num_latents=7, sample_every=2, save_every=2, sample_seeds="0-2", quiet=True, device="cpu",
                eval_seeds=8, evaluate=False)
    base.update(kw)
    return MapperConfig(**base)


# --- slices and the network ------------------------------------------------------------------

def test_level_slices_follow_the_block_resolutions():
    assert mapper_slices(1024) == {"coarse": (0, 4), "medium": (4, 8), "fine": (8, 18)}
    assert mapper_slices(64) == {"coarse": (0, 4), "medium": (4, 8), "fine": (8, 10)}
    assert mapper_slices(256) == {"coarse": (0, 4), "medium": (4, 8), "fine": (8, 14)}
    assert mapper_slices(16) == {"coarse": (0, 4), "medium": (4, 6), "fine": (6, 6)}  # no 64 px block


def test_submapper_matches_an_independent_formula():
    torch.manual_seed(0)
    m = LevelsMapper(MapperArch(64, 8, 10, n_layers=4, lr_multiplier=0.01))
    ws = torch.randn(3, 10, 8) * 3
    got = m(ws)
    sub = m.mappers["medium"]
    x = ws[:, 4:8].reshape(-1, 8)
    x = x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)
    for layer in sub.layers:
        y = x @ (layer.weight * 0.01 / math.sqrt(8)).T + layer.bias * 0.01
        x = F.leaky_relu(y, 0.2) * math.sqrt(2)
    torch.testing.assert_close(got[:, 4:8].reshape(-1, 8), x, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in m.parameters()) == 3 * 4 * (8 * 8 + 8)
    # 1024 px config-f: three sub-mappers of 4 layers 512 → 512, about 12 MB in float32
    big = LevelsMapper(MapperArch(1024, 512, 18))
    assert sum(p.numel() for p in big.parameters()) == 3 * 4 * (512 * 512 + 512)


def test_switched_off_level_and_strength():
    torch.manual_seed(1)
    m = LevelsMapper(MapperArch(64, 8, 10, levels=("coarse", "fine")))
    assert set(m.mappers) == {"coarse", "fine"}
    ws = torch.randn(2, 10, 8)
    edited = m.edit(ws, 0.1)
    assert torch.equal(edited[:, 4:8], ws[:, 4:8])            # medium off: its rows untouched
    assert not torch.allclose(edited[:, :4], ws[:, :4]) and not torch.allclose(edited[:, 8:], ws[:, 8:])
    assert torch.equal(m.edit(ws, 0.0), ws)                     # strength 0 is the identity
    torch.testing.assert_close(m.edit(ws, 0.3) - ws, 3 * (m.edit(ws, 0.1) - ws))  # linear in strength
    with pytest.raises(ConfigError, match="levels"):
        MapperArch(64, 8, 10, levels=("coarse", "tiny"))
    with pytest.raises(ConfigError, match="no W\\+ rows"):
        MapperArch(16, 8, 6, levels=("fine",))


# --- losses ----------------------------------------------------------------------------------

class FixedEncoder:
    """Stand-in CLIP: features = pooled pixels @ fixed W (unnormalised); texts → fixed unit vectors."""

    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(48, 6, generator=g)
        self.text = F.normalize(torch.randn(2, 6, generator=g), dim=-1)

    def encode_image(self, img):
        return F.adaptive_avg_pool2d(img, 4).flatten(1) @ self.proj

    def encode_text(self, texts):
        return torch.stack([self.text[0] if t == "photo" else self.text[1] for t in texts])


def test_loss_terms_match_independent_formulas():
    encs, weights = [FixedEncoder(0), FixedEncoder(1)], [1.0, 0.5]
    obj = MapperObjective(encs, weights, "blue", source="photo")
    torch.manual_seed(2)
    img0, img1 = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    ws, ws_e = torch.randn(3, 6, 4), torch.randn(3, 6, 4)
    src = obj.source_features(img0)
    got = obj.losses(src, img1, ws, ws_e, {"clip": 1, "latent": 1, "norm": 1, "direction": 1, "id": 1})
    assert set(got) == {"clip", "latent", "norm", "direction"}  # no identity network: no id term
    clip = norm = direction = 0.0
    for enc, w in zip(encs, weights):
        f0, f1 = enc.encode_image(img0), enc.encode_image(img1)
        t = enc.text[1]
        clip += w * (1 - (f1 @ t) / f1.norm(dim=1)).mean()
        norm += w * ((f1.norm(dim=1) - f0.norm(dim=1)) ** 2).mean()
        d_txt = F.normalize(enc.text[1] - enc.text[0], dim=0)
        d_img = F.normalize(f1, dim=1) - F.normalize(f0, dim=1)
        direction += w * (1 - (d_img @ d_txt) / d_img.norm(dim=1)).mean()
    torch.testing.assert_close(got["clip"], clip)
    torch.testing.assert_close(got["norm"], norm)
    torch.testing.assert_close(got["direction"], direction)
    torch.testing.assert_close(got["latent"], ((ws_e - ws) ** 2).mean())
    torch.testing.assert_close(latent_l2(ws, ws), torch.tensor(0.0))
    only = obj.losses(src, img1, ws, ws_e, {"clip": 0, "latent": 0.8, "norm": 0, "direction": 0})
    assert set(only) == {"latent"}


# --- files -----------------------------------------------------------------------------------

def test_save_load_round_trip_and_fit_checks(tmp_path, gen_paths):
    from nada.checkpoints import load_generator

    torch.manual_seed(3)
    G = load_generator(gen_paths["a"]).generator
    m = LevelsMapper(MapperArch.for_generator(G, ("coarse", "medium")))
    meta = {"target": "blue", "strength": 0.25, "generator": {"sha256": __import__("nada.hub", fromlist=["x"])
                                                              .sha256_file(gen_paths["a"]), "spec": "a"}}
    path = save_mapper(m, tmp_path / "m.safetensors", meta)
    loaded = load_mapper(path)
    ws = torch.randn(2, G.num_ws, G.w_dim)
    assert torch.equal(loaded.mapper(ws), m(ws))
    assert loaded.mapper.arch == m.arch and loaded.strength == 0.25 and loaded.metadata["target"] == "blue"
    assert path.stat().st_size < 64 * 1024  # the mapper only, never the generator
    assert check_fits(loaded, G, gen_paths["a"]) is None                       # the same generator
    note = check_fits(loaded, load_generator(gen_paths["b"]).generator, gen_paths["b"])
    assert note and "another generator of the same shape" in note             # an adapted twin, say
    with pytest.raises(ConfigError, match="32px"):
        check_fits(loaded, load_generator(gen_paths["big"]).generator, gen_paths["big"])
    # corrupt, foreign and mismatched files: one line each
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_mapper(bad)
    with pytest.raises(CheckpointError, match="not a nada mapper"):
        load_mapper(gen_paths["a"])
    with pytest.raises(CheckpointError, match="not a file"):
        load_mapper(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    from nada.mapper.files import MAPPER_FORMAT, MAPPER_FORMAT_VERSION
    state = {k: v for k, v in m.state_dict().items() if "coarse" not in k}
    save_file(state, str(tmp_path / "lying.safetensors"), metadata={
        "nada_format": MAPPER_FORMAT, "format_version": MAPPER_FORMAT_VERSION,
        "arch": json.dumps(m.arch.to_dict()), "metadata": "{}"})
    with pytest.raises(CheckpointError, match="do not match"):
        load_mapper(tmp_path / "lying.safetensors")


def test_latents_files(tmp_path):
    ws = torch.randn(5, 6, 16)
    p = save_latents(ws, tmp_path / "ws.safetensors")
    assert torch.equal(load_latents(p, 6, 16), ws)
    w = save_latents(ws[:, 0], tmp_path / "w.safetensors")       # W latents broadcast to every row
    assert torch.equal(load_latents(w, 6, 16), ws[:, :1].expand(-1, 6, -1))
    with pytest.raises(DataError, match="expected \\[N, 10, 16\\]"):
        load_latents(p, 10, 16)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file at all")
    with pytest.raises(DataError, match="not a readable"):
        load_latents(tmp_path / "junk.safetensors", 6, 16)
    with pytest.raises(DataError, match="does not exist"):
        load_latents(tmp_path / "nope.safetensors", 6, 16)


# --- training ----------------------------------------------------------------------------------

def test_epochs_use_every_latent_once(tmp_path, gen_paths):
    from nada.mapper.trainer import MapperTrainer, prepare_mapper

    prep = prepare_mapper(cfg_for(gen_paths["a"], tmp_path / "r"))
    t = MapperTrainer(prep, tmp_path)
    epoch = [t.next_indices() for _ in range(3)]  # 7 latents in batches of 3: 3 + 3 + 1
    assert [len(b) for b in epoch] == [3, 3, 1]
    assert sorted(torch.cat(epoch).tolist()) == list(range(7))
    second = torch.cat([t.next_indices() for _ in range(3)])
    assert sorted(second.tolist()) == list(range(7)) and not torch.equal(second, torch.cat(epoch))
    # the unedited images' features are computed once per latent, as the losses would
    got = t.source_features(torch.tensor([5, 2]))[0]
    assert t.have[[5, 2]].all() and not t.have[[0, 1, 3, 4, 6]].any()
    img0 = prep.G.synthesis(prep.latents[[5, 2]], noise_mode="const")
    torch.testing.assert_close(got, prep.objective.source_features(img0)[0])
    torch.testing.assert_close(t.source_features(torch.tensor([2]))[0], got[1:])  # kept, not recomputed


def test_lr_schedule_is_an_independent_cosine():
    cfg = MapperConfig(target="blue", steps=11, lr=0.5, lr_final=0.2)
    for step in range(11):
        want = 0.5 * 0.2 + 0.5 * 0.8 * (1 + math.cos(math.pi * step / 10)) / 2
        assert cfg.lr_at(step) == pytest.approx(want)
    assert MapperConfig(target="blue", lr_final=1.0).lr_at(300) == MapperConfig(target="blue").lr
    with pytest.raises(ConfigError, match="--lr-final"):
        MapperConfig(target="blue", lr_final=1.5)


def test_train_resume_is_bit_exact(tmp_path, gen_paths):
    full = train_mapper(cfg_for(gen_paths["a"], tmp_path / "full", steps=6, lr_final=0.25))
    assert full.steps == 6 and full.mapper_path.is_file()
    stop = __import__("threading").Event()
    seen = []

    def on_step(rec):
        seen.append((rec["step"], rec["iters"]))
        if rec["step"] == 3:
            stop.set()

    part = train_mapper(cfg_for(gen_paths["a"], tmp_path / "part", steps=6, lr_final=0.25),
                        RunHooks(on_step=on_step, stop=stop))
    assert part.interrupted and part.steps == 3 and part.mapper_path is None and seen[-1] == (3, 6)
    (tmp_path / "part").rename(tmp_path / "moved")  # a run directory that moved still resumes in place
    resumed = train_mapper(cfg_for(gen_paths["a"], tmp_path / "moved", steps=6, resume=True))
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in full.history[3:]]  # the schedule goes on
    assert resumed.steps == 6
    a, b = load_mapper(full.mapper_path), load_mapper(resumed.mapper_path)
    for k, v in a.mapper.state_dict().items():
        assert torch.equal(v, b.mapper.state_dict()[k]), k
    lines = [json.loads(x) for x in (tmp_path / "moved" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 7))
    assert [r["loss"] for r in lines] == [r["loss"] for r in full.history]
    # the file records what it was trained on, and the grid shows unedited above edited rows
    meta = a.metadata
    assert meta["target"] == "blue" and meta["generator"]["w_dim"] == 16 and meta["steps"] == 6
    from PIL import Image
    grid = Image.open(tmp_path / "full" / "samples" / "final.png")
    assert grid.size == (3 * 16 + 2 * 2, 2 * 16 + 2)


def test_init_fine_tunes_from_a_mapper(tmp_path, gen_paths):
    src = train_mapper(cfg_for(gen_paths["a"], tmp_path / "src", steps=2))
    tuned = train_mapper(cfg_for(gen_paths["b"], tmp_path / "tuned", steps=1, lr=0.05, init=str(src.mapper_path)))
    before = load_mapper(src.mapper_path).mapper.state_dict()
    after = load_mapper(tuned.mapper_path).mapper.state_dict()
    # one Adam step from the source mapper: every weight moved by at most ~lr
    assert all((after[k] - before[k]).abs().max() <= 0.05 * 1.01 for k in before)
    assert any(not torch.equal(after[k], before[k]) for k in before)
    with pytest.raises(ConfigError, match="levels"):
        train_mapper(cfg_for(gen_paths["b"], tmp_path / "x", init=str(src.mapper_path), levels=("coarse",)))
    with pytest.raises(ConfigError, match="32px"):
        train_mapper(cfg_for(gen_paths["big"], tmp_path / "y", init=str(src.mapper_path)))


@pytest.mark.parametrize("kw, words", [
    (dict(steps=0), "--steps"),
    (dict(batch=-1), "--batch"),
    (dict(target="  "), "--target is empty"),
    (dict(lr=0.0), "--lr"),
    (dict(levels=("coarse", "nope")), "--levels"),
    (dict(optimizer="sgd"), "--optimizer"),
    (dict(lambda_direction=1.0), "needs a --source"),
    (dict(lambda_clip=0.0), "no CLIP loss"),
    (dict(clip=("shapes", "shapes-fine"), clip_weights=(1.0,)), "clip weights"),
])
def test_config_rejects_bad_values(kw, words, tmp_path):
    with pytest.raises(ConfigError) as exc:
        cfg_for("x", tmp_path, **kw)
    assert words in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("kw, error, words", [
    (dict(generator="missing.safetensors"), CheckpointError, "not a file"),
    (dict(target="with glasses"), ConfigError, "does not know the word 'glasses'"),
    (dict(latents="missing.safetensors"), DataError, "does not exist"),
    (dict(init="missing.safetensors"), CheckpointError, "not a file"),
    (dict(clip=("NoSuchModel:nowhere",)), NadaError, "NoSuchModel"),
])
def test_bad_input_is_one_line_and_writes_nothing(kw, error, words, tmp_path, gen_paths):
    kw = {k: (str(tmp_path / v) if k in ("generator", "latents", "init") else v) for k, v in kw.items()}
    out = tmp_path / "run"
    with pytest.raises(error) as exc:
        train_mapper(cfg_for(gen_paths["a"], out, **kw))
    assert words in str(exc.value) and "\n" not in str(exc.value)
    assert not out.exists()


# --- CLI -------------------------------------------------------------------------------------

def test_cli_train_apply_and_errors(tmp_path, gen_paths, capsys):
    run = tmp_path / "run"
    assert cli(["mapper", "train", "--generator", str(gen_paths["a"]), "--clip", "shapes", "--target", "star",
                "--steps", "2", "--batch", "2", "--num-latents", "4", "--sample-seeds", "0-1", "--out", str(run),
                "--quiet", "--device", "cpu"]) == 0
    assert (run / "mapper.safetensors").is_file() and (run / "config.json").is_file()
    assert json.loads((run / "config.json").read_text())["kind"] == "mapper"
    grid = tmp_path / "g.png"
    assert cli(["mapper", "apply", "--mapper", str(run), "--seeds", "0-4", "--out", str(grid)]) == 0
    from PIL import Image
    assert Image.open(grid).size == (5 * 16 + 4 * 2, 2 * 16 + 2)
    # another generator of the same shape is allowed and says so; strength 0 gives identical rows
    capsys.readouterr()
    assert cli(["mapper", "apply", "--mapper", str(run), "--generator", str(gen_paths["b"]), "--seeds", "3",
                "--strength", "0", "--individual", "--out", str(tmp_path / "ind")]) == 0
    assert "another generator of the same shape" in capsys.readouterr().out
    a = Image.open(tmp_path / "ind" / "seed0003.png").tobytes()
    assert a == Image.open(tmp_path / "ind" / "seed0003_edit.png").tobytes()
    # errors: one line, exit 2, nothing written
    assert cli(["mapper", "apply", "--mapper", str(run), "--generator", str(gen_paths["big"]),
                "--out", str(tmp_path / "no.png")]) == 2
    err = capsys.readouterr().err
    assert "32px" in err and err.count("\n") == 1 and not (tmp_path / "no.png").exists()
    assert cli(["mapper", "train", "--generator", str(gen_paths["a"]), "--clip", "shapes",
                "--out", str(tmp_path / "none")]) == 2
    assert "--target is required" in capsys.readouterr().err
    assert cli(["mapper", "train", "--generator", str(gen_paths["a"]), "--target", "blue", "--steps", "0",
                "--out", str(tmp_path / "none")]) == 2
    assert "--steps 0" in capsys.readouterr().err and not (tmp_path / "none").exists()
    # resume: continue a run to more steps; the wrong kind of run is named in one line
    assert cli(["train", "--resume", str(run)]) == 2
    assert "is a mapper run" in capsys.readouterr().err
    assert cli(["mapper", "train", "--resume", str(run), "--steps", "3", "--quiet"]) == 0
    assert load_mapper(run).metadata["steps"] == 3
    with pytest.raises(SystemExit):
        cli(["mapper", "apply"])  # --mapper is required: argparse's own usage error


def test_eval_cli_on_a_mapper_run(tmp_path, gen_paths, capsys):
    run = tmp_path / "run"
    train_mapper(cfg_for(gen_paths["a"], run, steps=1))
    assert cli(["eval", str(run), "--seeds", "0-3"]) == 0
    out = capsys.readouterr().out
    assert "edit target" in out and "blue (colour)" in out
    m = json.loads((run / "eval.json").read_text())
    assert m["n"] == 4 and m["target_kind"] == "colour" and 0 <= m["style_kept"] <= 1


def test_parse_target_knows_shapes():
    from nada.shapes.evaluate import parse_target

    assert (parse_target("a star").kind, parse_target("a star").name) == ("shape", "star")
    assert parse_target("blue").kind == "colour" and parse_target("a blue star").kind == "colour"
    assert parse_target("neon").kind == "style"
    with pytest.raises(ConfigError, match="heart"):
        parse_target("glasses")


# --- identity network (faces) ------------------------------------------------------------------

def ir_se50_reference_keys() -> dict[str, tuple[int, ...]]:
    """The published model_ir_se50.pth layout, written out independently of nada.mapper.identity."""
    keys: dict[str, tuple[int, ...]] = {"input_layer.0.weight": (64, 3, 3, 3), "input_layer.2.weight": (64,)}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    bn("input_layer.1", 64)
    i, cin = 0, 64
    for cout, n in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for u in range(n):
            c_in = cin if u == 0 else cout
            p = f"body.{i}"
            if c_in != cout:
                keys[f"{p}.shortcut_layer.0.weight"] = (cout, c_in, 1, 1)
                bn(f"{p}.shortcut_layer.1", cout)
            bn(f"{p}.res_layer.0", c_in)
            keys[f"{p}.res_layer.1.weight"] = (cout, c_in, 3, 3)
            keys[f"{p}.res_layer.2.weight"] = (cout,)
            keys[f"{p}.res_layer.3.weight"] = (cout, cout, 3, 3)
            bn(f"{p}.res_layer.4", cout)
            keys[f"{p}.res_layer.5.fc1.weight"] = (cout // 16, cout, 1, 1)
            keys[f"{p}.res_layer.5.fc2.weight"] = (cout, cout // 16, 1, 1)
            i += 1
        cin = cout
    bn("output_layer.0", 512)
    keys["output_layer.3.weight"] = (512, 512 * 7 * 7)
    keys["output_layer.3.bias"] = (512,)
    bn("output_layer.4", 512)
    return keys


def test_identity_network_loads_the_published_layout(tmp_path):
    from nada.mapper.identity import IdentityLoss

    keys = ir_se50_reference_keys()
    g = torch.Generator().manual_seed(0)

    def tensor(k, shape):  # random weights at the scale a trained network has, so signals survive
        if not shape:
            return torch.tensor(5)
        r = torch.randn(shape, generator=g)
        if len(shape) > 1:                                   # conv / linear: He-scaled
            return r * math.sqrt(2 / math.prod(shape[1:]))
        if k.endswith("running_var"):
            return 1 + 0.1 * r.abs()
        if k.endswith(".weight") and "res_layer.2" not in k and "input_layer.2" not in k:
            return 1 + 0.1 * r                               # batch-norm scale
        return 0.1 * r if "layer.2" not in k else torch.full(shape, 0.25)  # shifts; PReLU slopes

    state = {k: tensor(k, shape) for k, shape in keys.items()}
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)
    ident = IdentityLoss.from_file(path)
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    f = ident.features(img)
    assert f.shape == (2, 512) and torch.allclose(f.norm(dim=1), torch.ones(2), atol=1e-5)
    assert ident.loss(f, img).abs() < 1e-5                              # same image: distance 0
    assert ident.loss(f, torch.flip(img, dims=[0])) > 1e-4             # swapped faces: not
    del state["output_layer.3.bias"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="output_layer.3.bias"):
        IdentityLoss.from_file(tmp_path / "short.pth")
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(CheckpointError, match="evil.pth"):
        IdentityLoss.from_file(tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not a file or a known name"):
        IdentityLoss.from_file(tmp_path / "nope.pth")
