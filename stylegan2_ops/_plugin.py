"""Building the compiled kernels on first use, once per machine (CUDA here; the CPU Winograd
extension in `conv.py` uses the same `build_cached`).

The extension is compiled with ``torch.utils.cpp_extension.load`` (ninja) into a cache folder
named by a hash of the sources, the torch/CUDA versions and the target GPU architectures, so a
change to any of them builds anew and nothing stale is ever loaded. The build runs in a
temporary folder and is moved into place atomically; a file lock keeps two processes from
building at once. The outcome (module or error) is recorded once per process and never retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

EXT_NAME = "nada_stylegan2_ops"
CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")


class PluginBuildError(RuntimeError):
    """The CUDA extension could not be built or loaded."""


_state: dict = {"tried": False, "module": None, "error": None, "path": None}


def _arch_list() -> str:
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{a}.{b}" for a, b in caps)
    return "default"


def cache_root() -> Path:
    """``$TORCH_EXTENSIONS_DIR`` if set, else a per-user folder under ``~/.cache/nada``."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "nada" / "torch_extensions"


def build_key() -> str:
    """Hash of everything the compiled module depends on."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    h.update(torch.__version__.encode())
    h.update(str(torch.version.cuda).encode())
    h.update(_arch_list().encode())
    return h.hexdigest()[:16]


def build_dir() -> Path:
    return cache_root() / f"{EXT_NAME}_{build_key()}"


def _find_module_file(folder: Path, name: str = EXT_NAME) -> Path | None:
    for path in folder.glob(f"{name}*.so"):
        return path
    return None


def _import_from(path: Path, name: str = EXT_NAME):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_cached(name: str, csrc: Path, sources: tuple[str, ...], final: Path, what: str, loader=None,
                 **load_kwargs):
    """Compile ``sources`` from ``csrc`` with ``cpp_extension.load`` into ``final`` (once: a
    file lock serialises processes, the build runs in a temporary folder moved into place
    atomically) and load the result: imported as a Python module, or ``loader(path)`` (e.g.
    ``ctypes.CDLL`` for a plain shared library). Raises :class:`PluginBuildError` with the
    compiler's tail."""
    from torch.utils import cpp_extension

    final.parent.mkdir(parents=True, exist_ok=True)
    found = _find_module_file(final, name)
    if found is None:
        with _file_lock(final.parent / f"{name}.lock"):
            found = _find_module_file(final, name)  # another process may have built it meanwhile
            if found is None:
                tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp.", dir=final.parent))
                try:
                    for src in sources:
                        shutil.copyfile(csrc / src, tmp / src)
                    log.info("stylegan2_ops: building %s in %s (first use)", what, tmp)
                    try:
                        cpp_extension.load(name=name, sources=[str(tmp / n) for n in sources],
                                           build_directory=str(tmp), **load_kwargs)
                    except Exception as exc:  # compiler errors arrive as RuntimeError/OSError
                        tail = "\n".join(str(exc).strip().splitlines()[-15:])
                        raise PluginBuildError(f"building the {what} failed:\n{tail}") from exc
                    if final.exists():
                        shutil.rmtree(final)
                    os.replace(tmp, final)
                finally:
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
                found = _find_module_file(final, name)
    if found is None:
        raise PluginBuildError(f"the build left no module in {final}")
    if loader is not None:
        try:
            return loader(str(found))
        except OSError as exc:
            raise PluginBuildError(f"loading the {what} from {found} failed: {exc}") from exc
    return _import_from(found, name)


def _wheel_cuda_includes() -> list[str]:
    """Headers of the CUDA libraries torch's wheels ship (e.g. cusparse.h), which a minimal
    CUDA toolkit lacks but ATen's CUDA headers include."""
    try:
        import nvidia  # namespace package installed with CUDA builds of torch
    except ImportError:
        return []
    found = []
    for root in getattr(nvidia, "__path__", []):
        for inc in sorted(Path(root).glob("*/include")):
            found.append(str(inc))
    return found


def build(verbose: bool = False):
    """Compile (or load the cached build of) the extension and return the module.

    Raises :class:`PluginBuildError` with the tail of the compiler output on failure.
    """
    if torch.version.cuda is None:
        raise PluginBuildError("this torch build has no CUDA support; install a CUDA build of torch")
    if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")) and Path("/usr/local/cuda/bin/nvcc").exists():
        os.environ["CUDA_HOME"] = "/usr/local/cuda"  # before cpp_extension reads it
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None or not shutil.which("nvcc", path=os.path.join(cpp_extension.CUDA_HOME, "bin")):
        raise PluginBuildError("nvcc was not found; install the CUDA toolkit or set CUDA_HOME")
    final = build_dir()
    env_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env_arch is None and _arch_list() != "default":
        os.environ["TORCH_CUDA_ARCH_LIST"] = _arch_list()  # only the GPUs present
    try:
        module = build_cached(
            EXT_NAME, CSRC, SOURCES, final, "CUDA kernels",
            extra_cflags=["-O3"],
            extra_include_paths=_wheel_cuda_includes(),
            extra_cuda_cflags=["-O3", "--use_fast_math"],
            verbose=verbose,
        )
    finally:
        if env_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
    _state["path"] = str(final)
    return module


def load_once(state: dict, build, fallback: str | None):
    """``state["module"]``, running ``build()`` on the first call only. A failure is kept in
    ``state["error"]``, never retried, and warned about once with ``fallback`` (the consequence
    and the fix) unless ``fallback`` is None."""
    if not state["tried"]:
        state["tried"] = True
        try:
            state["module"] = build()
        except PluginBuildError as exc:
            state["error"] = str(exc)
            if fallback is not None:
                warnings.warn(f"stylegan2_ops: {exc}\n{fallback}", RuntimeWarning, stacklevel=5)
    return state["module"]


def loaded_state(state: dict) -> str | None:
    """The ``nada info`` line of a plugin that was built or failed in this process, else None."""
    if state["module"] is not None:
        return f"built ({state['path']})"
    if state["error"]:
        return "build failed: " + state["error"].splitlines()[0]
    return None


def get_plugin(strict: bool):
    """The compiled module, building it on the first call; ``None`` (auto) or raise (strict)
    if it cannot be had. A failure warns once and is never retried in this process."""
    fallback = ("Falling back to the reference ops (correct, slower). Fix: install a CUDA toolkit "
                "matching torch.version.cuda and ninja, or set NADA_OPS=ref to skip the build.")
    module = load_once(_state, build, None if strict else fallback)
    if module is None and strict:
        raise PluginBuildError(_state["error"] or "the CUDA kernels are not available")
    return module


def build_state() -> str:
    """One line for ``nada info``."""
    if loaded := loaded_state(_state):
        return loaded
    if torch.version.cuda is None:
        return "unavailable (torch has no CUDA support)"
    cached = _find_module_file(build_dir())
    if cached:
        return f"built, cached at {cached.parent} (loads on first CUDA use)"
    return "not built yet (builds on first use with a CUDA tensor)"
