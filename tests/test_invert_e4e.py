"""The e4e encoder: the released checkpoint's key layout (every key and shape, built on the meta
device from the layout's description), a save/load round trip through the weights-only loader with
random weights, what the codes are made of, and one-line errors for bad checkpoints."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import torch

from nada.errors import CheckpointError
from nada.invert.e4e import E4E, Encoder4Editing, load_e4e, state_dict_for_checkpoint


def expected_layout(num_ws: int = 18, w_dim: int = 512) -> dict[str, tuple]:
    """e4e's Encoder4Editing keys and shapes, written out from its description: IR-SE50 units
    (64x3, 128x4, 256x14, 512x3; first unit of each stage strided), one map2style block per W+
    row (16 / 32 / 64 px maps for rows <3, <7, rest), two lateral 1x1 convs."""
    keys: dict[str, tuple] = {}

    def bn(prefix, c):
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                     f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    keys["input_layer.0.weight"] = (64, 3, 3, 3)
    bn("input_layer.1", 64)
    keys["input_layer.2.weight"] = (64,)
    i, cin = 0, 64
    for cout, n in [(64, 3), (128, 4), (256, 14), (512, 3)]:
        for _ in range(n):
            u = f"body.{i}"
            if cin != cout:
                keys[f"{u}.shortcut_layer.0.weight"] = (cout, cin, 1, 1)
                bn(f"{u}.shortcut_layer.1", cout)
            bn(f"{u}.res_layer.0", cin)
            keys[f"{u}.res_layer.1.weight"] = (cout, cin, 3, 3)
            keys[f"{u}.res_layer.2.weight"] = (cout,)
            keys[f"{u}.res_layer.3.weight"] = (cout, cout, 3, 3)
            bn(f"{u}.res_layer.4", cout)
            keys[f"{u}.res_layer.5.fc1.weight"] = (cout // 16, cout, 1, 1)
            keys[f"{u}.res_layer.5.fc2.weight"] = (cout, cout // 16, 1, 1)
            i, cin = i + 1, cout
    for r in range(num_ws):
        spatial = 16 if r < 3 else 32 if r < 7 else 64
        for j in range(int(math.log2(spatial))):
            keys[f"styles.{r}.convs.{2 * j}.weight"] = (w_dim, 512, 3, 3)
            keys[f"styles.{r}.convs.{2 * j}.bias"] = (w_dim,)
        keys[f"styles.{r}.linear.weight"] = (w_dim, w_dim)
        keys[f"styles.{r}.linear.bias"] = (w_dim,)
    keys.update({"latlayer1.weight": (512, 256, 1, 1), "latlayer1.bias": (512,),
                 "latlayer2.weight": (512, 128, 1, 1), "latlayer2.bias": (512,)})
    return keys


def test_key_layout_is_the_released_checkpoints():
    with torch.device("meta"):  # shapes only: the real encoder has ~270 M parameters
        model = Encoder4Editing(num_ws=18, w_dim=512)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = expected_layout()
    assert sorted(set(got) ^ set(want)) == []
    assert {k: got[k] for k in want} == want
    assert len(want) > 600  # hundreds of keys, every one compared above


def _random_e4e(num_ws: int, seed: int = 0) -> E4E:
    torch.manual_seed(seed)
    enc = Encoder4Editing(num_ws=num_ws, w_dim=16, width=0.125)
    with torch.no_grad():  # non-trivial batch-norm statistics, so the round trip carries them too
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    avg = torch.randn(16)
    return E4E(enc.eval(), avg, {"encoder_type": "Encoder4Editing", "stylegan_size": 2 ** ((num_ws + 2) // 2)})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _random_e4e(num_ws=10)  # a 64 px generator's W+
    path = tmp_path_factory.mktemp("e4e") / "e4e_test.pt"
    torch.save(state_dict_for_checkpoint(model), path)
    return model, path


def test_round_trip_through_the_weights_only_loader(saved):
    model, path = saved
    loaded = load_e4e(path)
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    a, b = model(x), loaded(x)
    assert a.shape == (2, 10, 16)
    assert torch.equal(a, b)
    assert loaded.opts["stylegan_size"] == 64
    small = torch.rand(1, 3, 64, 64) * 2 - 1  # any size is resized to 256 first
    assert loaded(small).shape == (1, 10, 16)


def test_codes_are_a_base_w_plus_deltas_plus_latent_avg(saved):
    model, _ = saved
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    enc = model.encoder
    with torch.no_grad():
        enc.progressive_stage = 1  # no deltas: every row is the base code
        base = model(x)
        enc.progressive_stage = enc.num_ws
        full = model(x)
    assert torch.allclose(base, base[:, :1].expand_as(base))
    assert torch.allclose(base[0, 0] - model.latent_avg[0], enc.styles[0](_top_map(enc, x))[0], atol=1e-5)
    assert not torch.allclose(full[:, 1:], base[:, 1:])


def _top_map(enc, x):
    h = enc.input_layer(x)
    for unit in enc.body:
        h = unit(h)
    return h


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/nada-e4e-pwned",))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bad_checkpoints_are_one_line_errors(tmp_path, saved):
    model, _ = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        load_e4e(tmp_path / "nope.pt")
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    if os.path.exists("/tmp/nada-e4e-pwned"):
        os.unlink("/tmp/nada-e4e-pwned")
    with pytest.raises(CheckpointError, match="not a loadable e4e checkpoint") as exc:
        load_e4e(evil)
    assert "\n" not in str(exc.value) and not os.path.exists("/tmp/nada-e4e-pwned")
    ck = state_dict_for_checkpoint(model)
    cases = {
        "no_sd": ({"opts": {}}, "no 'state_dict'"),
        "no_encoder": ({"state_dict": {"decoder.x": torch.zeros(1)}}, "no 'encoder"),
        "missing": ({**ck, "state_dict": {k: v for k, v in ck["state_dict"].items() if "latlayer1" not in k}},
                    "key layout differs"),
        "shape": ({**ck, "state_dict": {**ck["state_dict"], "encoder.latlayer2.bias": torch.zeros(3)}}, "has shape"),
        "avg": ({**ck, "latent_avg": torch.zeros(7)}, "latent_avg"),
        "type": ({**ck, "opts": {"encoder_type": "GradualStyleEncoder"}}, "encoder_type"),
    }
    for name, (obj, msg) in cases.items():
        p = tmp_path / f"{name}.pt"
        torch.save(obj, p)
        with pytest.raises(CheckpointError, match=msg) as exc:
            load_e4e(p)
        assert "\n" not in str(exc.value), name


def test_nada_invert_with_an_encoder_refines_its_codes(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from nada.cli import main
    from nada.shapes import renderer as R

    torch.manual_seed(1)
    enc = E4E(Encoder4Editing(num_ws=10, w_dim=128, width=0.125).eval(), torch.zeros(128), {"stylegan_size": 64})
    torch.save(state_dict_for_checkpoint(enc), tmp_path / "enc.pt")
    Image.fromarray(R.render(R.Factors("circle", 100.0, 30.0, 30.0, 14.0), 0)).save(tmp_path / "c.png")
    for extra, steps in (([], 3), (["--no-refine"], 0)):
        out = tmp_path / f"out{steps}"
        assert main(["invert", str(tmp_path / "c.png"), "--encoder", str(tmp_path / "enc.pt"), "--steps", "3",
                     "--out", str(out), "--quiet", *extra]) == 0
        m = json.loads((out / "metrics.json").read_text())
        assert m["space"] == "W+" and m["steps"] == steps and m["encoder"].endswith("enc.pt")
        assert np.asarray(Image.open(out / "c_recon.png")).shape == (64, 64, 3)
