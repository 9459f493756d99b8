"""TensorFlow StyleGAN2 pickles (NVlabs/stylegan2, e.g. the LSUN config-f releases) → nada
generator config + state dict, without TensorFlow and without running pickled code.

Such a file pickles the tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects; the
safe unpickler turns each into a :class:`.safe_pickle.TFNetworkRecord` holding its state: the
variables as plain numpy arrays, named inside the network's scope. ``Gs`` (the moving average)
holds ``dlatent_avg`` and the components ``mapping`` (``Dense{i}/weight`` ``[in, out]``,
``Dense{i}/bias``) and ``synthesis`` (``4x4/Const/const`` ``[1, C, 4, 4]``; per block
``{r}x{r}/{Conv|Conv0_up|Conv1|ToRGB}/{weight, bias, mod_weight, mod_bias, noise_strength}``
with conv weights ``[kh, kw, in, out]``; ``noise{i}`` ``[1, 1, r, r]``, one per conv layer in
order). TensorFlow computes ``styles = dense(w) + 1`` where PyTorch folds the 1 into the affine
bias, and runs the up-sampling conv as a transposed convolution, whose kernel is the spatially
flipped one of PyTorch's.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

from ..networks import GeneratorConfig
from .errors import layout_error
from .nvidia import jsonable
from .rosinality import channel_rule
from .safe_pickle import TFNetworkRecord

_DENSE = re.compile(r"^Dense(\d+)/weight$")
_BLOCK = re.compile(r"^(\d+)x\1/(?:Conv1|Conv)/weight$")
_IGNORED = {"lod"}  # progressive-growing level, fixed at 0 in StyleGAN2 releases


def is_tf_pickle(obj: Any) -> bool:
    return isinstance(obj, tuple) and bool(obj) and any(isinstance(o, TFNetworkRecord) for o in obj)


def _arrays(rec: TFNetworkRecord, path: str, where: str) -> dict[str, np.ndarray]:
    out = {}
    for name, value in rec.variables().items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # a numpy scalar (sess.run of a scalar)
            value = np.asarray(value, dtype=np.float32)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            raise layout_error(path, f"{where} variable {name!r} is not a numeric array")
        out[name] = value
    return out


def load_tensorflow(obj: tuple, path: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    """From the safely unpickled ``(G, D, Gs)`` to (config, nada state dict, metadata)."""
    gs = obj[-1]  # Gs, the moving average used for sampling
    if not isinstance(gs, TFNetworkRecord):
        raise layout_error(path, "the last network of this TensorFlow pickle is not a network record")
    comps = gs.components
    mapping, synthesis = comps.get("mapping"), comps.get("synthesis")
    if not isinstance(mapping, TFNetworkRecord) or not isinstance(synthesis, TFNetworkRecord):
        raise layout_error(path, "TensorFlow generator without mapping and synthesis components",
                           missing=[k for k in ("mapping", "synthesis") if not isinstance(comps.get(k), TFNetworkRecord)])
    sk, mk = synthesis.static_kwargs, mapping.static_kwargs
    if sk.get("architecture", "skip") != "skip":
        raise layout_error(path, f"synthesis architecture {sk['architecture']!r} is not supported",
                           hint="nada supports 'skip' (config-e/f)")
    if sk.get("nonlinearity", "lrelu") != "lrelu" or mk.get("mapping_nonlinearity", "lrelu") != "lrelu":
        raise layout_error(path, "activations other than lrelu are not supported")
    mv, sv, top = _arrays(mapping, path, "mapping"), _arrays(synthesis, path, "synthesis"), _arrays(gs, path, "Gs")
    if any(k.startswith("LabelConcat") or k.startswith("LabelEmbed") for k in mv):
        raise layout_error(path, "conditional generator (label embedding) is not supported",
                           hint="use an unconditional StyleGAN2 generator")
    denses = sorted(int(m.group(1)) for k in mv if (m := _DENSE.match(k)))
    blocks = sorted(int(m.group(1)) for k in sv if (m := _BLOCK.match(k)))
    if not denses or not blocks or "4x4/Const/const" not in sv:
        raise layout_error(path, "not a StyleGAN2 generator (no Dense / Const / Conv variables)",
                           missing=[k for k in ("Dense0/weight", "4x4/Const/const", "4x4/Conv/weight")
                                    if k not in mv and k not in sv])
    res = max(blocks)
    if blocks != [2**i for i in range(2, int(math.log2(res)) + 1)]:
        raise layout_error(path, f"block resolutions {blocks} are not 4, 8, ..., {res}")
    chans = {r: int(sv[f"{r}x{r}/{'Conv' if r == 4 else 'Conv1'}/weight"].shape[3]) for r in blocks}
    base, cmax = channel_rule(chans)
    if base is None:
        raise layout_error(path, f"channel widths {chans} follow no channel_base / channel_max rule")
    z_dim = int(mv["Dense0/weight"].shape[0])
    w_dim = int(mv[f"Dense{denses[-1]}/weight"].shape[1])
    kernel = sk.get("resample_kernel", [1, 3, 3, 1])
    try:
        cfg = GeneratorConfig(
            img_resolution=res, z_dim=z_dim, w_dim=w_dim, mapping_layers=len(denses),
            mapping_lr_mul=float(mk.get("mapping_lrmul", 0.01)), channel_base=base, channel_max=cmax,
            img_channels=int(sv[f"{res}x{res}/ToRGB/bias"].shape[0]) if f"{res}x{res}/ToRGB/bias" in sv else 3,
            resample_filter=tuple(int(v) for v in kernel),
        )
    except Exception as exc:  # a ConfigError from validation
        raise layout_error(path, f"unsupported generator settings ({exc})") from exc

    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: dict[str, np.ndarray], name: str, where: str) -> np.ndarray:
        if name not in src:
            raise layout_error(path, f"TensorFlow {where} lacks a variable the architecture needs", missing=[name])
        used.add(f"{where}/{name}")
        return src[name]

    def put(key: str, array: np.ndarray) -> None:
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32, order="C"))  # keeps 0-d shapes

    for i in denses:
        put(f"mapping.fc{i}.weight", take(mv, f"Dense{i}/weight", "mapping").T)
        put(f"mapping.fc{i}.bias", take(mv, f"Dense{i}/bias", "mapping"))
    if "dlatent_avg" in top:
        put("mapping.w_avg", take(top, "dlatent_avg", "Gs"))
    put("synthesis.b4.const", take(sv, "4x4/Const/const", "synthesis")[0])

    def layer(prefix: str, scope: str, flip: bool = False, noise: int | None = None) -> None:
        w = take(sv, f"{scope}/weight", "synthesis")
        if flip:  # transposed-conv kernel → the direct conv's
            w = w[::-1, ::-1]
        put(f"{prefix}.weight", w.transpose(3, 2, 0, 1))
        put(f"{prefix}.bias", take(sv, f"{scope}/bias", "synthesis"))
        put(f"{prefix}.affine.weight", take(sv, f"{scope}/mod_weight", "synthesis").T)
        put(f"{prefix}.affine.bias", take(sv, f"{scope}/mod_bias", "synthesis") + 1.0)
        if noise is not None:
            put(f"{prefix}.noise_strength", np.asarray(take(sv, f"{scope}/noise_strength", "synthesis")).reshape(()))
            put(f"{prefix}.noise_const", take(sv, f"noise{noise}", "synthesis")[0, 0])

    for r in blocks:
        log2 = int(math.log2(r))
        if r == 4:
            layer("synthesis.b4.conv1", "4x4/Conv", noise=0)
        else:
            layer(f"synthesis.b{r}.conv0", f"{r}x{r}/Conv0_up", flip=True, noise=2 * log2 - 5)
            layer(f"synthesis.b{r}.conv1", f"{r}x{r}/Conv1", noise=2 * log2 - 4)
        layer(f"synthesis.b{r}.torgb", f"{r}x{r}/ToRGB")

    left = [f"{where}/{k}" for where, src in (("mapping", mv), ("synthesis", sv), ("Gs", top))
            for k in src if f"{where}/{k}" not in used and k not in _IGNORED]
    if left:
        raise layout_error(path, "TensorFlow generator has variables nada does not map", unexpected=left)
    meta = {"source_format": "tensorflow", "network": "Gs",
            "tf_static_kwargs": {"mapping": jsonable(mk), "synthesis": jsonable(sk)}}
    return cfg, state, meta

