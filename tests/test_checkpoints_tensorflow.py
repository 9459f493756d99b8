"""TensorFlow StyleGAN2 pickles (the LSUN releases' layout) load without TensorFlow and without
running code: the test writes such a pickle from a nada generator with its own TensorFlow-side
naming (the inverse of the loader's mapping, written here from the TF graph's conventions) and
checks that loading gives back the same weights and the same images."""

from __future__ import annotations

import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from nada.checkpoints import load_generator
from nada.cli import main
from nada.errors import CheckpointError
from nada.networks import Generator, GeneratorConfig
from nada.networks.sampling import generate_images


@pytest.fixture()
def tf_module(monkeypatch):
    """A stand-in ``dnnlib.tflib.network`` module whose Network pickles like TensorFlow's."""

    class Network:
        def __init__(self, name, static_kwargs, components, variables):
            self._state = {"version": 4, "name": name, "static_kwargs": static_kwargs, "components": components,
                           "build_module_src": "import os\nos.system('echo pwned')\n",
                           "build_func_name": "G_synthesis_stylegan2", "variables": variables}

        def __getstate__(self):
            return self._state

    for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    sys.modules["dnnlib.tflib.network"].Network = Network
    return Network


def _tf_variables(G: Generator) -> tuple[list, list, list]:
    """nada → TensorFlow StyleGAN2 variables: TF dense weights are [in, out], conv kernels
    [kh, kw, in, out] (the up-sampling one applied by conv2d_transpose, so flipped), styles are
    ``dense(w) + 1`` and the constant input is [1, C, 4, 4] NCHW."""
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in G.state_dict().items()}
    mapping = []
    for i in range(G.cfg.mapping_layers):
        mapping += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T.copy()), (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"])]
    synthesis = [("4x4/Const/const", sd["synthesis.b4.const"][None])]
    noise = []

    def conv(scope, key, up=False):
        k = sd[f"{key}.weight"].transpose(2, 3, 1, 0)  # [out,in,kh,kw] -> [kh,kw,in,out]
        if up:
            k = k[::-1, ::-1]
        out = [(f"{scope}/weight", k.copy()), (f"{scope}/bias", sd[f"{key}.bias"]),
               (f"{scope}/mod_weight", sd[f"{key}.affine.weight"].T.copy()),
               (f"{scope}/mod_bias", sd[f"{key}.affine.bias"] - 1.0)]
        if f"{key}.noise_strength" in sd:
            out.append((f"{scope}/noise_strength", sd[f"{key}.noise_strength"]))
            noise.append(sd[f"{key}.noise_const"][None, None])
        return out

    res = G.cfg.img_resolution
    for r in (2**i for i in range(2, int(math.log2(res)) + 1)):
        if r == 4:
            synthesis += conv("4x4/Conv", "synthesis.b4.conv1")
        else:
            synthesis += conv(f"{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", up=True)
            synthesis += conv(f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1")
        synthesis += conv(f"{r}x{r}/ToRGB", f"synthesis.b{r}.torgb")
    synthesis += [(f"noise{i}", n) for i, n in enumerate(noise)] + [("lod", np.float32(0.0))]
    return mapping, synthesis, [("dlatent_avg", sd["mapping.w_avg"])]


def _write(tmp_path, Network, G, mutate=None, name="lsun.pkl"):
    mapping, synthesis, top = _tf_variables(G)
    if mutate:
        mapping, synthesis, top = mutate(mapping, synthesis, top)
    m = Network("G_mapping", {"mapping_lrmul": 0.01}, {}, mapping)
    s = Network("G_synthesis", {"architecture": "skip", "resolution": G.cfg.img_resolution}, {}, synthesis)
    gs = Network("Gs", {}, {"mapping": m, "synthesis": s}, top)
    d = Network("D", {}, {}, [("Output/weight", np.zeros((4, 1), np.float32))])
    path = tmp_path / name
    path.write_bytes(pickle.dumps((gs, d, gs), protocol=3))
    return path


@pytest.fixture()
def G():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2,
                                  channel_base=128, channel_max=16)).eval()
    with torch.no_grad():  # make every tensor distinct from its init, biases and noise included
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, b in g.named_buffers():
            if "noise_const" in name or name.endswith("w_avg"):
                b.copy_(torch.randn_like(b))
    return g


def test_tf_pickle_loads_to_the_same_generator(tmp_path, tf_module, G):
    path = _write(tmp_path, tf_module, G)
    loaded = load_generator(path)
    assert loaded.format == "tensorflow" and loaded.metadata["source_format"] == "tensorflow"
    assert loaded.generator.cfg.img_resolution == 16 and loaded.generator.cfg.channel_max == 16
    want = G.state_dict()
    got = loaded.generator.state_dict()
    for k, v in want.items():
        assert torch.equal(v, got[k]), k
    assert np.array_equal(generate_images(loaded.generator, [0, 1, 2]), generate_images(G, [0, 1, 2]))
    assert "pwned" not in str(loaded.metadata)  # the embedded build source is kept inert, not run


def test_nada_convert_reads_it(tmp_path, tf_module, G, capsys):
    path = _write(tmp_path, tf_module, G)
    out = tmp_path / "church.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    assert "tensorflow" in capsys.readouterr().out
    back = load_generator(out).generator
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in G.state_dict().items())


def test_tf_pickle_errors_are_one_line(tmp_path, tf_module, G):
    drop = lambda m, s, t: (m, [x for x in s if x[0] != "8x8/Conv1/mod_bias"], t)  # noqa: E731
    with pytest.raises(CheckpointError, match="lacks a variable.*8x8/Conv1/mod_bias"):
        load_generator(_write(tmp_path, tf_module, G, drop, "a.pkl"))
    extra = lambda m, s, t: (m, s + [("16x16/Extra/weight", np.zeros(3, np.float32))], t)  # noqa: E731
    with pytest.raises(CheckpointError, match="does not map.*Extra"):
        load_generator(_write(tmp_path, tf_module, G, extra, "b.pkl"))
    objects = lambda m, s, t: (m, s + [("noise99", np.array([object()], dtype=object))], t)  # noqa: E731
    with pytest.raises(CheckpointError, match="corrupt pickle|numeric"):
        load_generator(_write(tmp_path, tf_module, G, objects, "c.pkl"))


def test_numpy_cannot_allocate_what_a_pickle_only_declares(tmp_path):
    """A pickle that calls numpy.ndarray((huge,)) directly is refused, not allocated."""
    data = (b"\x80\x03cnumpy\nndarray\nq\x00J\xff\xff\xff\x7f\x85q\x01\x85q\x02Rq\x03.")
    path = tmp_path / "bomb.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        load_generator(path)
