"""NVIDIA stylegan2-ada-pytorch network pickles → nada generator config + state dict, safely.

A network pickle (``pickle.dump`` of a dict) holds ``G``, ``D``, ``G_ema`` (persistent
records, see :mod:`.safe_pickle`), ``augment_pipe`` and ``training_set_kwargs``. ``G_ema`` is a
``Generator`` record whose init kwargs are ``z_dim, c_dim, w_dim, img_resolution,
img_channels, mapping_kwargs={num_layers, lr_multiplier, w_avg_beta, …},
synthesis_kwargs={channel_base, channel_max, num_fp16_res, conv_clamp, architecture, …}``
(missing entries take the class defaults). Its ``state_dict()`` keys are nada's keys plus the
fixed ``…resample_filter`` buffers: ``mapping.fc{i}.weight|bias``, ``mapping.w_avg``,
``synthesis.b4.const``, ``synthesis.b{r}.conv{0,1}.{weight, bias, noise_const,
noise_strength, affine.weight, affine.bias, resample_filter}``, ``synthesis.b{r}.torgb.{weight,
bias, affine.*}``, ``synthesis.b{r}.resample_filter``.
"""

from __future__ import annotations

import logging
import pickle
import re
from typing import Any

import torch

import stylegan2_ops

from ..networks import GeneratorConfig
from .errors import layout_error
from .rosinality import channel_rule
from .safe_pickle import Opaque, PersistentRecord, find_opaque, iter_records, record_state_dict

log = logging.getLogger(__name__)

_FC_RE = re.compile(r"^mapping\.fc(\d+)\.weight$")
_BLOCK_RE = re.compile(r"^synthesis\.b(\d+)\.conv1\.weight$")


def _detect_out_of_scope(rec: PersistentRecord, path: str) -> None:
    names = {r.class_name for _, r in iter_records(rec)}
    srcs = " ".join({r.module_src for _, r in iter_records(rec)})
    if any("Superres" in n for n in names) or "pg_modules" in srcs:
        raise layout_error(path, "this is a StyleGAN-XL generator, which nada does not support",
                           hint="use a StyleGAN2 checkpoint (stylegan2-ada-pytorch or rosinality)")
    if "SynthesisInput" in names or "class SynthesisInput" in srcs:
        raise layout_error(path, "this is a StyleGAN3 generator, which nada does not support",
                           hint="use a StyleGAN2 checkpoint (stylegan2-ada-pytorch or rosinality)")


def config_from_record(rec: PersistentRecord, sd: dict[str, torch.Tensor], path: str) -> tuple[GeneratorConfig, dict]:
    """Architecture from the init kwargs (or the tensors when kwargs are absent); checks scope."""
    kw = rec.init_kwargs
    mk = dict(kw.get("mapping_kwargs") or {})
    sk = dict(kw.get("synthesis_kwargs") or {})
    extra: dict[str, Any] = {}
    if int(kw.get("c_dim", 0) or 0) != 0:
        raise layout_error(path, f"conditional generator (c_dim={kw.get('c_dim')}) is not supported",
                           hint="use an unconditional StyleGAN2 generator")
    arch = sk.get("architecture", "skip")
    if arch != "skip":
        raise layout_error(path, f"synthesis architecture {arch!r} is not supported", hint="nada supports 'skip' (config-f)")
    if mk.get("activation", "lrelu") != "lrelu" or sk.get("activation", "lrelu") != "lrelu":
        raise layout_error(path, "activations other than lrelu are not supported")
    if mk.get("layer_features") not in (None, kw.get("w_dim", mk.get("layer_features"))):
        raise layout_error(path, "mapping layer_features != w_dim is not supported")
    if sk.get("num_fp16_res"):
        extra["num_fp16_res"] = sk["num_fp16_res"]  # NVIDIA runs those blocks in fp16 on GPUs; nada runs fp32

    fcs = sorted(int(m.group(1)) for k in sd if (m := _FC_RE.match(k)))
    blocks = sorted(int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k)))
    if not fcs or not blocks:
        raise layout_error(path, "G_ema has no StyleGAN2 mapping/synthesis tensors",
                           missing=[k for k in ("mapping.fc0.weight", "synthesis.b4.conv1.weight") if k not in sd])
    w_dim = int(sd["mapping.fc0.weight"].shape[0])
    inferred = dict(
        img_resolution=max(blocks),
        z_dim=int(sd["mapping.fc0.weight"].shape[1]),
        w_dim=w_dim,
        mapping_layers=len(fcs),
        img_channels=int(sd[f"synthesis.b{max(blocks)}.torgb.weight"].shape[0]),
    )
    base, cmax = channel_rule({r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in blocks})
    filt = sk.get("resample_filter", [1, 3, 3, 1])
    fields = dict(
        img_resolution=int(kw.get("img_resolution", inferred["img_resolution"])),
        z_dim=int(kw.get("z_dim", inferred["z_dim"])),
        w_dim=int(kw.get("w_dim", inferred["w_dim"])),
        mapping_layers=int(mk.get("num_layers", 8 if kw else inferred["mapping_layers"])),
        mapping_lr_mul=float(mk.get("lr_multiplier", 0.01)),
        w_avg_beta=float(mk["w_avg_beta"]) if mk.get("w_avg_beta") is not None else 0.995,
        channel_base=int(sk.get("channel_base", 32768 if kw else (base or 32768))),
        channel_max=int(sk.get("channel_max", 512 if kw else cmax)),
        img_channels=int(kw.get("img_channels", inferred["img_channels"])),
        resample_filter=tuple(int(v) for v in filt),
        conv_clamp=float(sk["conv_clamp"]) if sk.get("conv_clamp") is not None else None,
        use_noise=bool(sk.get("use_noise", True)),
    )
    try:
        return GeneratorConfig(**fields), extra
    except Exception as exc:  # a ConfigError from validation
        raise layout_error(path, f"unsupported generator settings ({exc})") from exc


def load_nvidia(obj: Any, refused: list[str], path: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    """From the safely unpickled object to (config, nada state dict without filters, metadata)."""
    if isinstance(obj, tuple) and obj and all(isinstance(o, Opaque) for o in obj):
        names = sorted({o.global_name for o in obj})
        if any("tflib" in n for n in names):
            raise layout_error(path, "a TensorFlow pickle whose networks are not dnnlib.tflib Network records",
                               hint="nada reads NVlabs/stylegan2 generator pickles (G, D, Gs)")
    if not isinstance(obj, dict):
        what = f"it names {', '.join(refused)}, which is refused" if refused else f"it holds a {type(obj).__name__}"
        raise layout_error(path, f"not a StyleGAN2 network pickle ({what})",
                           hint="nada reads stylegan2-ada-pytorch pickles with G_ema and runs none of their code")
    key = "G_ema" if "G_ema" in obj else "G" if "G" in obj else None
    if key is None:
        raise layout_error(path, "network pickle has no G_ema or G", missing=["G_ema"],
                           unexpected=[str(k) for k in obj][:5])
    rec = obj[key]
    if isinstance(rec, Opaque) or not isinstance(rec, PersistentRecord):
        raise layout_error(path, f"{key} is not an NVIDIA persistent network record "
                           f"({getattr(rec, 'global_name', type(rec).__name__)} is refused)",
                           hint="only stylegan2-ada-pytorch style pickles are supported")
    _detect_out_of_scope(rec, path)
    bad = find_opaque(rec)
    if bad:
        where, name = bad[0]
        raise layout_error(path, f"{key}.{where} needs {name}, which the safe loader refuses to import",
                           hint="re-export the generator with plain tensors (e.g. `nada convert` on a trusted machine)")
    if rec.class_name != "Generator":
        raise layout_error(path, f"{key} is a {rec.class_name}, not a StyleGAN2 Generator")
    try:
        sd = record_state_dict(rec)
    except pickle.UnpicklingError as exc:
        raise layout_error(path, f"{key} is malformed: {exc}") from exc
    cfg, extra = config_from_record(rec, sd, path)
    filt = stylegan2_ops.setup_filter(list(cfg.resample_filter))
    filters = [k for k in sd if k.endswith("resample_filter")]
    bad_filters = [k for k in filters if sd[k].shape != filt.shape or not torch.allclose(sd[k].float(), filt)]
    if bad_filters:
        raise layout_error(path, "resample filters differ from the configured filter", mismatched=bad_filters)
    state = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
    meta = {
        "source_format": "nvidia",
        "network": key,
        "nvidia_init_kwargs": jsonable(rec.init_kwargs),
        **extra,
    }
    ignored = sorted(set(refused))
    if ignored:
        meta["ignored_globals"] = ignored
        log.info("%s: ignored parts that need %s (not used by the generator)", path, ", ".join(ignored))
    return cfg, state, meta


def jsonable(obj: Any) -> Any:
    """Pickled settings as JSON values (anything else as its repr), for generator metadata."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)
