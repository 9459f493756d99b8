"""Test helpers that write checkpoints in the exact layouts of the public formats, from scratch.

rosinality/stylegan2-pytorch ``Generator(size, style_dim, n_mlp, channel_multiplier)`` state
dict, in its registration order:
  style.{1..n_mlp}.weight [S,S], .bias [S]           (EqualLinear, lr_mul folded at run time)
  input.input [1,C4,4,4]
  conv1.conv.weight [1,C4,C4,3,3]; conv1.conv.modulation.weight [C4,S], .bias [C4];
  conv1.noise.weight [1]; conv1.activate.bias [C4]
  to_rgb1.conv.weight [1,3,C4,1,1]; to_rgb1.conv.modulation.weight/.bias; to_rgb1.bias [1,3,1,1]
  for k, res = 8..size: convs.{2k} (up-sampling StyledConv, adds conv.blur.kernel [4,4]),
  convs.{2k+1}; to_rgbs.{k} (adds upsample.kernel [4,4]); noises.noise_{j} [1,1,R,R] for
  j = 0..2·log2(size)−4 with R = 2^((j+5)//2).
Channels: 512 up to 32px, then 256m, 128m, 64m, 32m, 16m at 64…1024.
Training checkpoints: {"g", "d", "g_ema", "g_optim", "d_optim", "args"}; converted TF weights:
{"g_ema", "latent_avg"}.

NVIDIA stylegan2-ada-pytorch network pickle: pickle protocol 4 of {"G", "D", "G_ema",
"augment_pipe", "training_set_kwargs"}; each network is the reduce call
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, meta = {type: "class", version: 6,
module_src: <python source>, class_name, state: module.__dict__}, nested for submodules.
Generator.__dict__ has _parameters/_buffers/_modules (OrderedDicts), _init_args (), _init_kwargs
(dnnlib.util.EasyDict: z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs,
synthesis_kwargs) and plain attributes (some numpy float64). Module tree: Generator{synthesis:
SynthesisNetwork{b4..bR: SynthesisBlock{const | conv0, conv1: SynthesisLayer{affine:
FullyConnectedLayer}, torgb: ToRGBLayer{affine}}}, mapping: MappingNetwork{fc0..: FC}};
SynthesisLayer/SynthesisBlock carry a persistent ``resample_filter`` [4,4] buffer.
"""

from __future__ import annotations

import collections
import math
import pickle
import sys
import types
from contextlib import contextmanager

import numpy as np
import torch

ROS_FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0])
ROS_KERNEL = (ROS_FILTER[:, None] * ROS_FILTER[None, :]) / 64 * 4  # normalised outer product x 4
NV_FILTER = (ROS_FILTER[:, None] * ROS_FILTER[None, :]) / 64


def ros_channels(size: int, m: int) -> dict[int, int]:
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}
    return {r: c for r, c in table.items() if r <= size}


def rosinality_state_dict(size: int, style_dim: int, n_mlp: int, m: int, seed: int = 0,
                          channels: dict[int, int] | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ch = channels or ros_channels(size, m)
    sd: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = rnd(style_dim, style_dim) * 100
        sd[f"style.{i}.bias"] = rnd(style_dim) * 0.1

    def styled(prefix, cin, cout, up):
        sd[f"{prefix}.conv.weight"] = rnd(1, cout, cin, 3, 3)
        sd[f"{prefix}.conv.modulation.weight"] = rnd(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * rnd(cin)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = ROS_KERNEL.clone()
        sd[f"{prefix}.noise.weight"] = 0.1 * rnd(1)
        sd[f"{prefix}.activate.bias"] = 0.1 * rnd(cout)

    def torgb(prefix, cin, up):
        if up:
            sd[f"{prefix}.upsample.kernel"] = ROS_KERNEL.clone()
        sd[f"{prefix}.conv.weight"] = rnd(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = rnd(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * rnd(cin)
        sd[f"{prefix}.bias"] = 0.1 * rnd(1, 3, 1, 1)

    sd["input.input"] = rnd(1, ch[4], 4, 4)
    styled("conv1", ch[4], ch[4], False)
    torgb("to_rgb1", ch[4], False)
    log_size = int(math.log2(size))
    for j in range((log_size - 2) * 2 + 1):
        r = 2 ** ((j + 5) // 2)
        sd[f"noises.noise_{j}"] = rnd(1, 1, r, r)
    cin = ch[4]
    for k, i in enumerate(range(3, log_size + 1)):
        cout = ch[2**i]
        styled(f"convs.{2 * k}", cin, cout, True)
        styled(f"convs.{2 * k + 1}", cout, cout, False)
        torgb(f"to_rgbs.{k}", cout, True)
        cin = cout
    return sd


# --- NVIDIA pickles ----------------------------------------------------------------------------

@contextmanager
def fake_nvidia_modules():
    """Register stand-in ``torch_utils.persistence`` / ``dnnlib.util`` modules so ``pickle.dumps``
    writes the same global names NVIDIA's pickles use; removed again afterwards."""
    tu = types.ModuleType("torch_utils")
    pers = types.ModuleType("torch_utils.persistence")
    dn = types.ModuleType("dnnlib")
    dnu = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # never called by the code under test
        raise AssertionError("the loader must not call the pickled reconstructor")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    pers._reconstruct_persistent_obj = _reconstruct_persistent_obj
    EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"})
    dnu.EasyDict = EasyDict
    names = {"torch_utils": tu, "torch_utils.persistence": pers, "dnnlib": dn, "dnnlib.util": dnu}
    saved = {k: sys.modules.get(k) for k in names}
    sys.modules.update(names)
    try:
        yield pers, EasyDict
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Record:
    """Pickles as ``_reconstruct_persistent_obj({type, version, module_src, class_name, state})``."""

    def __init__(self, reconstruct, class_name, state, module_src="# networks.py source\n"):
        self.reconstruct, self.class_name, self.state, self.module_src = reconstruct, class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (self.reconstruct, (meta,))


def _module_state(params, buffers=None, modules=None, kwargs=None, **attrs):
    state = {
        "training": False,
        "_parameters": collections.OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) for k, v in params.items()),
        "_buffers": collections.OrderedDict(buffers or {}),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(modules or {}),
        "_init_args": (),
        "_init_kwargs": kwargs or {},
    }
    state.update(attrs)
    return state


def nvidia_generator_record(sd: dict[str, torch.Tensor], init_kwargs: dict, reconstruct, EasyDict,
                            module_src: str = "# networks.py source\n") -> Record:
    """A G_ema record tree holding the tensors of a nada/NVIDIA-keyed state dict ``sd``."""
    def rec(cls, params, buffers=None, modules=None, **attrs):
        return Record(reconstruct, cls, _module_state(params, buffers, modules, **attrs), module_src)

    def fc(prefix, lr=1.0, act="linear"):
        w = sd[f"{prefix}.weight"]
        return rec("FullyConnectedLayer", {"weight": w, "bias": sd[f"{prefix}.bias"]},
                   activation=act, weight_gain=np.float64(lr / np.sqrt(w.shape[1])), bias_gain=lr)

    res_list = sorted(int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b") and k.endswith(".conv1.weight"))
    blocks = collections.OrderedDict()
    for res in res_list:
        pre = f"synthesis.b{res}"
        mods = collections.OrderedDict()
        for conv in (["conv0"] if res > 4 else []) + ["conv1"]:
            p = f"{pre}.{conv}"
            mods[conv] = rec("SynthesisLayer",
                             {"weight": sd[f"{p}.weight"], "noise_strength": sd[f"{p}.noise_strength"], "bias": sd[f"{p}.bias"]},
                             {"resample_filter": NV_FILTER.clone(), "noise_const": sd[f"{p}.noise_const"]},
                             {"affine": fc(f"{p}.affine")},
                             resolution=res, up=2 if conv == "conv0" else 1, use_noise=True,
                             activation="lrelu", conv_clamp=None, padding=1, act_gain=np.float64(np.sqrt(2)))
        mods["torgb"] = rec("ToRGBLayer", {"weight": sd[f"{pre}.torgb.weight"], "bias": sd[f"{pre}.torgb.bias"]}, None,
                            {"affine": fc(f"{pre}.torgb.affine")}, conv_clamp=None,
                            weight_gain=np.float64(1 / np.sqrt(sd[f"{pre}.torgb.weight"].shape[1])))
        params = {"const": sd[f"{pre}.const"]} if res == 4 else {}
        blocks[f"b{res}"] = rec("SynthesisBlock", params, {"resample_filter": NV_FILTER.clone()}, mods,
                                resolution=res, in_channels=0 if res == 4 else 1, architecture="skip")
    synthesis = rec("SynthesisNetwork", {}, None, blocks, img_resolution=max(res_list),
                    block_resolutions=res_list, num_ws=2 * int(math.log2(max(res_list))) - 2)
    n_fc = sum(1 for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
    lr = init_kwargs.get("mapping_kwargs", {}).get("lr_multiplier", 0.01)
    mapping = rec("MappingNetwork", {}, {"w_avg": sd["mapping.w_avg"]},
                  {f"fc{i}": fc(f"mapping.fc{i}", lr, "lrelu") for i in range(n_fc)}, num_layers=n_fc)
    kw = EasyDict({k: (EasyDict(v) if isinstance(v, dict) else v) for k, v in init_kwargs.items()})
    return rec("Generator", {}, None, collections.OrderedDict(synthesis=synthesis, mapping=mapping), kwargs=kw,
               z_dim=init_kwargs["z_dim"], w_dim=init_kwargs["w_dim"])


def nvidia_pickle_bytes(sd: dict[str, torch.Tensor], init_kwargs: dict, extra: dict | None = None,
                        module_src: str = "# networks.py source\n", g_ema_override=None, inject=None) -> bytes:
    """Bytes of a stylegan2-ada-pytorch style network pickle around the tensors in ``sd``;
    ``inject(G_record)`` may edit the record tree before pickling."""
    with fake_nvidia_modules() as (pers, EasyDict):
        G = nvidia_generator_record(sd, init_kwargs, pers._reconstruct_persistent_obj, EasyDict, module_src)
        if inject is not None:
            inject(G)
        data = {
            "G": G,
            "D": Record(pers._reconstruct_persistent_obj, "Discriminator", _module_state({"w": torch.zeros(2)})),
            "G_ema": g_ema_override if g_ema_override is not None else G,
            "augment_pipe": None,
            "training_set_kwargs": EasyDict(path="ffhq.zip", resolution=1024),
        }
        data.update(extra or {})
        return pickle.dumps(data, protocol=4)
