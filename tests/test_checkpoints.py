"""nada.checkpoints: round trips in every format (files built in the official key layouts by
tests/ckpt_builders.py), safe loading of NVIDIA pickles, and clear errors for bad files."""

from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch

from nada.checkpoints import (
    describe_checkpoint,
    detect_format,
    export_rosinality,
    load_generator,
    save_generator,
)
from nada.errors import CheckpointError
from nada.networks import Generator, GeneratorConfig

from ckpt_builders import (
    ROS_KERNEL,
    nvidia_pickle_bytes,
    ros_channels,
    rosinality_state_dict,
)


def small_cfg(res=16, **kw):
    base = dict(img_resolution=res, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=32)
    base.update(kw)
    return GeneratorConfig(**base)


def random_generator(cfg, seed=0):
    torch.manual_seed(seed)
    G = Generator(cfg)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.normal_()
    return G.eval()


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --- nada format ----------------------------------------------------------------------------

@pytest.mark.parametrize("res", [8, 32])
def test_nada_round_trip_is_exact(tmp_path, res):
    G = random_generator(small_cfg(res, conv_clamp=256.0, mapping_lr_mul=0.02))
    meta = {"source": "x.pkl", "train": {"target": "sketch", "iters": 3}}
    path = save_generator(G, tmp_path / "g.safetensors", metadata=meta)
    assert detect_format(path) == "nada"
    loaded = load_generator(path)
    assert loaded.format == "nada" and loaded.generator.cfg == G.cfg
    assert loaded.metadata == meta
    assert_same_state(G, loaded.generator)
    z = torch.randn(2, 16)
    assert torch.equal(G(z), loaded.generator(z))
    assert [f for f in os.listdir(tmp_path)] == ["g.safetensors"]  # no temp files left behind


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    G = random_generator(small_cfg())
    path = save_generator(G, tmp_path / "g.safetensors")
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="JSON"):
        save_generator(G, path, metadata={"bad": object()})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["g.safetensors"]


# --- rosinality -----------------------------------------------------------------------------

@pytest.mark.parametrize("size,m,n_mlp", [(8, 2, 2), (64, 1, 3), (128, 2, 2)])
def test_rosinality_load_and_export_round_trip(tmp_path, size, m, n_mlp):
    sd = rosinality_state_dict(size, 32, n_mlp, m, seed=size)
    latent = torch.randn(32)
    src = tmp_path / "ros.pt"
    torch.save({"g": sd, "d": {"w": torch.zeros(1)}, "g_ema": sd, "latent_avg": latent,
                "args": argparse.Namespace(size=size, channel_multiplier=m)}, src)
    assert detect_format(src) == "torch"
    loaded = load_generator(src)
    G, cfg = loaded.generator, loaded.generator.cfg
    assert loaded.format == "rosinality" and loaded.metadata["w_avg"] == "latent_avg"
    assert (cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (size, 32, 32, n_mlp)
    assert {r: cfg.channels(r) for r in cfg.block_resolutions} == ros_channels(size, m)
    if size >= 64:
        assert cfg.channel_multiplier == m
    # semantic spot checks of the layout mapping
    assert torch.equal(G.synthesis.b4.const, sd["input.input"][0])
    assert torch.equal(G.synthesis.b8.conv0.noise_const, sd["noises.noise_1"][0, 0])
    assert torch.equal(G.synthesis.b8.conv1.noise_const, sd["noises.noise_2"][0, 0])
    assert torch.equal(G.synthesis.b8.torgb.bias, sd["to_rgbs.0.bias"].flatten())
    assert torch.equal(G.mapping.fc0.weight, sd["style.1.weight"])
    assert torch.equal(G.mapping.w_avg, latent)
    # export gives back exactly the same g_ema and latent_avg
    out = export_rosinality(G, tmp_path / "back.pt")
    ck = torch.load(out, weights_only=True)
    assert ck["g_ema"].keys() == sd.keys()
    for k in sd:
        assert torch.equal(ck["g_ema"][k], sd[k]), k
    assert torch.equal(ck["latent_avg"], latent)
    assert_same_state(G, load_generator(out).generator)


def test_rosinality_without_latent_avg_estimates_it(tmp_path):
    sd = rosinality_state_dict(8, 16, 2, 2)
    torch.save({"g_ema": sd}, tmp_path / "a.pt")
    a = load_generator(tmp_path / "a.pt")
    b = load_generator(tmp_path / "a.pt")
    assert "estimated" in a.metadata["w_avg"]
    assert torch.equal(a.generator.mapping.w_avg, b.generator.mapping.w_avg)  # fixed seed
    # it is the mean of mapped latents: truncation towards it shrinks the spread of w
    ws = a.generator.mapping(torch.randn(512, 16), truncation_psi=0.5)[:, 0]
    assert (ws.mean(0) - a.generator.mapping.w_avg).norm() < 0.2 * ws.std(0).norm()


def test_rosinality_g_fallback_and_legacy_torch_format(tmp_path):
    sd = rosinality_state_dict(8, 16, 2, 2)
    path = tmp_path / "legacy.pt"
    torch.save({"g": sd, "latent_avg": torch.zeros(16)}, path, _use_new_zipfile_serialization=False)
    assert detect_format(path) == "pickle"
    loaded = load_generator(path)
    assert loaded.format == "rosinality" and loaded.metadata["network"] == "g"


def test_rosinality_mismatches_name_keys(tmp_path):
    sd = rosinality_state_dict(16, 16, 2, 2)
    bad = dict(sd)
    bad["convs.1.conv.weight"] = torch.randn(1, 512, 256, 3, 3)
    torch.save({"g_ema": bad}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape\.pt.*b8\.conv1\.weight"):
        load_generator(tmp_path / "shape.pt")
    missing = {k: v for k, v in sd.items() if k != "convs.2.noise.weight"}
    torch.save({"g_ema": missing}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: convs\.2\.noise\.weight"):
        load_generator(tmp_path / "missing.pt")
    extra = dict(sd, **{"convs.9.foo": torch.zeros(1)})
    torch.save({"g_ema": extra}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys: convs\.9\.foo"):
        load_generator(tmp_path / "extra.pt")
    torch.save({"state": 1}, tmp_path / "nog.pt")
    with pytest.raises(CheckpointError, match="no g_ema"):
        load_generator(tmp_path / "nog.pt")


def test_torch_checkpoint_with_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"g_ema": rosinality_state_dict(8, 16, 2, 2), "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: refused"):
        load_generator(tmp_path / "evil.pt")
    assert not marker.exists()


# --- NVIDIA pickles -------------------------------------------------------------------------

def nv_kwargs(cfg: GeneratorConfig) -> dict:
    return dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=cfg.mapping_layers),
                synthesis_kwargs=dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                      num_fp16_res=4, conv_clamp=256))


@pytest.mark.parametrize("res", [8, 32])
def test_nvidia_pickle_loads_exactly(tmp_path, res):
    cfg = small_cfg(res, conv_clamp=256.0)
    G = random_generator(cfg, seed=res)
    path = tmp_path / "network.pkl"
    path.write_bytes(nvidia_pickle_bytes(G.state_dict(), nv_kwargs(cfg)))
    assert detect_format(path) == "pickle"
    loaded = load_generator(path)
    assert loaded.format == "nvidia" and loaded.generator.cfg == cfg
    assert loaded.metadata["num_fp16_res"] == 4
    assert_same_state(G, loaded.generator)
    # and on to nada / rosinality and back, unchanged
    back = load_generator(save_generator(loaded.generator, tmp_path / "n.safetensors")).generator
    assert_same_state(G, back)
    ros = load_generator(export_rosinality(loaded.generator, tmp_path / "r.pt")).generator
    assert_same_state(G, ros)
    assert ros.cfg == cfg


def test_nvidia_pickle_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    cfg = small_cfg(8)
    G = random_generator(cfg)
    # the persistent records' module source would write the marker if executed; the augment
    # pipe slot holds an os.system call; G_ema itself is fine and must load.
    data = nvidia_pickle_bytes(G.state_dict(), nv_kwargs(cfg), extra={"augment_pipe": Evil()}, module_src=src)
    (tmp_path / "a.pkl").write_bytes(data)
    loaded = load_generator(tmp_path / "a.pkl")
    assert "posix.system" in loaded.metadata["ignored_globals"] or "os.system" in str(loaded.metadata)
    assert not marker.exists()
    # G_ema replaced by a code-running object: refused with a clear message, nothing runs
    (tmp_path / "b.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), nv_kwargs(cfg), g_ema_override=Evil()))
    with pytest.raises(CheckpointError, match=r"b\.pkl: G_ema is not an NVIDIA persistent network record.*system"):
        load_generator(tmp_path / "b.pkl")
    # a bare malicious pickle
    (tmp_path / "c.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match=r"c\.pkl: not a StyleGAN2 network pickle.*system.*refused"):
        load_generator(tmp_path / "c.pkl")
    (tmp_path / "d.pkl").write_bytes(pickle.dumps({"G_ema": [eval, exec]}))
    with pytest.raises(CheckpointError, match=r"d\.pkl"):
        load_generator(tmp_path / "d.pkl")
    assert not marker.exists()


class _ForeignLayer:
    """Pickles as a call to torch.nn.Linear: a class the safe loader must not import."""

    def __reduce__(self):
        return (torch.nn.Linear, (2, 2))


def test_nvidia_generator_needing_foreign_classes_is_refused(tmp_path):
    cfg = small_cfg(8)
    G = random_generator(cfg)

    def inject(rec):
        rec.state["_modules"]["synthesis"].state["_modules"]["extra"] = _ForeignLayer()

    (tmp_path / "f.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), nv_kwargs(cfg), inject=inject))
    with pytest.raises(CheckpointError, match=r"f\.pkl: G_ema\.synthesis\.extra needs torch\.nn\.modules\.linear\.Linear"):
        load_generator(tmp_path / "f.pkl")


def test_nvidia_out_of_scope_and_mismatch(tmp_path):
    cfg = small_cfg(8)
    G = random_generator(cfg)
    sg3 = nvidia_pickle_bytes(G.state_dict(), nv_kwargs(cfg), module_src="class SynthesisInput(torch.nn.Module): pass\n")
    (tmp_path / "sg3.pkl").write_bytes(sg3)
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        load_generator(tmp_path / "sg3.pkl")
    xl = nvidia_pickle_bytes(G.state_dict(), nv_kwargs(cfg), module_src="from pg_modules.blocks import Interpolate\n")
    (tmp_path / "xl.pkl").write_bytes(xl)
    with pytest.raises(CheckpointError, match="StyleGAN-XL"):
        load_generator(tmp_path / "xl.pkl")
    kw = nv_kwargs(cfg)
    kw["c_dim"] = 10
    (tmp_path / "cond.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), kw))
    with pytest.raises(CheckpointError, match="conditional"):
        load_generator(tmp_path / "cond.pkl")
    kw = nv_kwargs(cfg)
    kw["synthesis_kwargs"]["channel_max"] = 64  # kwargs disagree with the tensors
    (tmp_path / "mis.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), kw))
    with pytest.raises(CheckpointError, match=r"mis\.pkl.*mismatched: synthesis\.b4\.const"):
        load_generator(tmp_path / "mis.pkl")
    (tmp_path / "tuple.pkl").write_bytes(pickle.dumps((1, 2), protocol=4))
    with pytest.raises(CheckpointError, match="not a StyleGAN2 network pickle"):
        load_generator(tmp_path / "tuple.pkl")


# --- corrupt / unknown files ----------------------------------------------------------------

def test_corrupt_truncated_and_unknown_files(tmp_path):
    G = random_generator(small_cfg(8))
    good = {
        "nada": save_generator(G, tmp_path / "g.safetensors"),
        "ros": export_rosinality(G, tmp_path / "g.pt"),
    }
    cfg = G.cfg
    (tmp_path / "g.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), nv_kwargs(cfg)))
    good["nv"] = tmp_path / "g.pkl"
    for name, path in good.items():
        data = path.read_bytes()
        cut = tmp_path / f"cut_{name}{path.suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=rf"cut_{name}"):
            load_generator(cut)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load_generator(tmp_path / "empty.pt")
    (tmp_path / "text.pkl").write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_generator(tmp_path / "text.pkl")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_generator(tmp_path / "absent.pt")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="without nada generator metadata"):
        load_generator(tmp_path / "plain.safetensors")


def test_describe_checkpoint(tmp_path):
    G = random_generator(small_cfg(16))
    rows = dict(describe_checkpoint(save_generator(G, tmp_path / "g.safetensors", {"source": "s"})))
    assert rows["format"] == "nada" and rows["resolution"] == "16x16x3" and rows["num_ws"] == "6"
    assert rows["parameters"] == f"{sum(p.numel() for p in G.parameters()):,}"
    rows = dict(describe_checkpoint(export_rosinality(G, tmp_path / "g.pt")))
    assert rows["format"] == "rosinality"


def test_blur_kernel_constant_matches_rosinality():
    from nada.checkpoints.rosinality import blur_kernel

    assert torch.allclose(blur_kernel(small_cfg()), ROS_KERNEL)


def test_tagged_reader_round_trip_and_refusals(tmp_path):
    """The one reader of nada's safetensors files (generators, domains, mappers)."""
    from safetensors.torch import save_file

    from nada.checkpoints.tagged import read_tagged

    t = {"a": torch.arange(6.0).reshape(2, 3)}
    good = tmp_path / "good.safetensors"
    save_file(t, str(good), metadata={"nada_format": "kind-x", "format_version": "1", "extra": "e"})
    args = ("kind-x", "1", "thing file", "not a thing file", "write one with nada")
    header, tensors = read_tagged(good, *args)
    assert header["extra"] == "e" and torch.equal(tensors["a"], t["a"])
    other = tmp_path / "other.safetensors"
    save_file(t, str(other), metadata={"nada_format": "kind-y", "format_version": "1"})
    with pytest.raises(CheckpointError, match="not a thing file") as exc:
        read_tagged(other, *args)
    assert exc.value.hint == "write one with nada"
    newer = tmp_path / "newer.safetensors"
    save_file(t, str(newer), metadata={"nada_format": "kind-x", "format_version": "9"})
    with pytest.raises(CheckpointError, match="thing file format version '9' is not supported"):
        read_tagged(newer, *args)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(CheckpointError, match="truncated or corrupt thing file"):
        read_tagged(cut, *args)
