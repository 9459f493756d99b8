"""A restricted unpickler for NVIDIA stylegan2-ada-pytorch network pickles that runs no pickled code.

NVIDIA's pickles store each network as a ``torch_utils.persistence`` record: a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where ``meta`` is a dict with
``type='class'``, ``version``, ``module_src`` (the *source code* of the module defining the
class, which ``pickle.load`` would ``exec``), ``class_name`` and ``state`` (the module's
``__dict__``: ``_parameters``, ``_buffers``, ``_modules``, ``_init_args``, ``_init_kwargs``, …).

Here that call builds a :class:`PersistentRecord` instead: the source is kept as an inert
string and never executed. Tensors are rebuilt through torch's own weights-only loader.
Every other global a pickle names becomes an inert :class:`Opaque` placeholder that records
what was asked for; the caller refuses the checkpoint if a placeholder sits in a part it needs
(a discriminator built on foreign classes does not stop us reading ``G_ema``).
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a legacy (pre-zip) torch.save file


@dataclass
class PersistentRecord:
    """An NVIDIA persistent object, unexecuted: class name, its module source (never run), state."""

    class_name: str
    version: int | None
    module_src: str
    state: dict[str, Any]

    def submodules(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return _plain(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())


class Opaque:
    """Stand-in for an object whose class the pickle names but we do not allow; runs nothing."""

    global_name = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self.global_name}>"


class TFNetworkRecord:
    """A TensorFlow StyleGAN2 ``dnnlib.tflib.network.Network``, unexecuted: its pickled state
    (``name``, ``static_kwargs``, ``components`` (nested records), ``variables`` (name, numpy
    array) pairs, ``build_module_src`` kept as an inert string). No TensorFlow is imported."""

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    @property
    def name(self) -> str:
        return str(self.state.get("name", ""))

    @property
    def static_kwargs(self) -> dict[str, Any]:
        kw = self.state.get("static_kwargs")
        return dict(kw) if isinstance(kw, dict) else {}

    @property
    def components(self) -> dict[str, Any]:
        comps = self.state.get("components")
        return dict(comps) if isinstance(comps, dict) else {}

    def variables(self) -> dict[str, Any]:
        out = {}
        for item in self.state.get("variables") or []:
            if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
                out[item[0]] = item[1]
        return out


class _NDArrayClass:
    """What ``numpy.ndarray`` resolves to: a marker for :func:`_numpy_reconstruct`, not callable,
    so a pickle cannot allocate an array of a size it merely declares."""


_NDARRAY = _NDArrayClass()


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """An empty array that the pickle's BUILD fills with ndarray.__setstate__ (numpy checks the
    bytes against the declared shape and dtype; dtypes come from :func:`_numpy_dtype`)."""
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("numpy _reconstruct of something other than an ndarray")
    return np.empty((0,), dtype=np.uint8)


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if cls is not TFNetworkRecord or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg reconstruction of a refused class")
    return TFNetworkRecord()


class AttrDict(dict):
    """Plain dict standing in for ``dnnlib.util.EasyDict``."""


def _opaque_class(module: str, name: str) -> type:
    return type(f"Opaque[{module}.{name}]", (Opaque,), {"global_name": f"{module}.{name}"})


def _reconstruct_persistent(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError("persistent record without a meta dict")
    state = meta.get("state")
    return PersistentRecord(
        class_name=str(meta.get("class_name")),
        version=meta.get("version"),
        module_src=str(meta.get("module_src", "")),
        state=dict(state) if isinstance(state, dict) else {},
    )


_ELEMENT_BYTES = {"Double": 8, "Long": 8, "ComplexFloat": 8, "Float": 4, "Int": 4, "Half": 2, "BFloat16": 2,
                  "Short": 2, "Char": 1, "Byte": 1, "Bool": 1}


class _StorageScan(pickle.Unpickler):
    """Reads the pickles of a legacy ``torch.save`` storage record without building anything,
    collecting the sizes its storages declare."""

    def __init__(self, file: io.BytesIO):
        super().__init__(file)
        self.declared = 0

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name.endswith("Storage"):
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):  # a tensor record: nothing is built
            return lambda *args: None
        raise pickle.UnpicklingError(f"storage record names {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("storage record with an unknown persistent id")
        kind, numel = pid[1], pid[4]
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("storage record with a bad element count")
        unit = _ELEMENT_BYTES.get(str(kind).removesuffix("Storage"), 1) if isinstance(kind, str) else 1
        self.declared += numel * unit
        return None


def _check_storage_sizes(data: bytes) -> None:
    """Refuse a storage record whose storages declare more bytes than it holds, before torch
    allocates them (the legacy loader allocates the declared size first, then reads)."""
    scan = _StorageScan(io.BytesIO(data))
    for _ in range(4):  # magic number, protocol version, system info, the object
        scan.load()
    if scan.declared > len(data):
        raise pickle.UnpicklingError(f"a tensor storage declares {scan.declared:,} bytes in a record of {len(data):,}")


def _load_storage(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage record is not bytes")
    data = bytes(data)
    _check_storage_sizes(data)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("tensor record without a storage")
    return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=True, hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter record without a tensor")
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy scalar with an unsupported dtype")
    if data is None:
        return dtype.type().item()
    if isinstance(data, str):  # pickles written by Python 2 numpy carry latin-1 strings
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("numpy dtype spec is not a string")
    dt = np.dtype(spec)
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy object dtype refused")
    return dt


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib.util", "EasyDict"): AttrDict,
    ("dnnlib", "EasyDict"): AttrDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
}


class SafeUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; anything else becomes an :class:`Opaque` placeholder
    recorded in ``self.refused``."""

    def __init__(self, file: io.BufferedIOBase):
        super().__init__(file)
        self.refused: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        self.refused.append(f"{module}.{name}")
        return _opaque_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not used by network pickles")


@dataclass
class SafeLoadResult:
    obj: Any
    refused: list[str] = field(default_factory=list)


def safe_load(data: bytes) -> SafeLoadResult:
    """Unpickle ``data`` without executing anything it names; see the module docstring."""
    up = SafeUnpickler(io.BytesIO(data))
    obj = up.load()
    return SafeLoadResult(obj, sorted(set(up.refused)))


def find_opaque(obj: Any, path: str = "", _depth: int = 0) -> list[tuple[str, str]]:
    """(path, global) for every placeholder inside ``obj`` (records, dicts, lists)."""
    if _depth > 200:
        return []
    if isinstance(obj, Opaque):
        return [(path or "<root>", obj.global_name)]
    found: list[tuple[str, str]] = []
    if isinstance(obj, PersistentRecord):
        for key in ("_parameters", "_buffers", "_init_kwargs", "_init_args"):
            found += find_opaque(obj.state.get(key), f"{path}.{key}" if path else key, _depth + 1)
        for name, sub in obj.submodules().items():
            found += find_opaque(sub, f"{path}.{name}" if path else name, _depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found += find_opaque(v, f"{path}.{k}" if path else str(k), _depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            found += find_opaque(v, f"{path}[{i}]", _depth + 1)
    return found


def record_state_dict(rec: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """The ``state_dict()`` the record's module would have: parameters and buffers, recursively."""
    out: dict[str, torch.Tensor] = {}
    non_persistent = rec.state.get("_non_persistent_buffers_set") or set()
    for key in ("_parameters", "_buffers"):
        for name, value in (rec.state.get(key) or {}).items():
            if value is None or (key == "_buffers" and name in non_persistent):
                continue
            if not isinstance(value, torch.Tensor):
                raise pickle.UnpicklingError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = value
    for name, sub in rec.submodules().items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentRecord):
            raise pickle.UnpicklingError(f"{prefix}{name} is not a persistent network record")
        out.update(record_state_dict(sub, f"{prefix}{name}."))
    return out


def iter_records(rec: PersistentRecord, prefix: str = ""):
    """(path, record) for a record and all its persistent submodules."""
    yield prefix, rec
    for name, sub in rec.submodules().items():
        if isinstance(sub, PersistentRecord):
            yield from iter_records(sub, f"{prefix}.{name}" if prefix else name)


def _plain(obj: Any) -> Any:
    """AttrDicts/OrderedDicts → dicts, tuples/lists kept, for init kwargs."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj
