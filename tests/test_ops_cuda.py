"""The CUDA kernels: the extension builds here (slow; needs nvcc and a CUDA build of torch),
and on a GPU they match the reference forward and backward in fp32 and fp16."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import stylegan2_ops as ops
from stylegan2_ops import _plugin

HAS_NVCC = torch.version.cuda is not None and (
    shutil.which("nvcc") is not None or shutil.which("/usr/local/cuda/bin/nvcc") is not None
)
HAS_GPU = torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NVCC, reason="needs nvcc and a CUDA build of torch")
def test_extension_builds_and_imports(tmp_path):
    """Build into a fresh cache in a subprocess (one GPU architecture to keep it short), then a
    second process finds the cached build instead of compiling again."""
    code = (
        "import time, stylegan2_ops._plugin as p\n"
        "t = time.time(); m = p.build(); print('BUILD', time.time() - t)\n"
        "assert hasattr(m, 'upfirdn2d') and hasattr(m, 'bias_act')\n"
    )
    env = {"TORCH_EXTENSIONS_DIR": str(tmp_path), "TORCH_CUDA_ARCH_LIST": "9.0", "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/cuda/bin", os.environ.get("PATH", "")])}  # ninja lives beside python
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3000)
    assert first.returncode == 0, first.stderr[-3000:]
    built = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith(_plugin.EXT_NAME)]
    assert len(built) == 1 and not any(".tmp." in p.name for p in tmp_path.iterdir())
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert float(second.stdout.split("BUILD")[1]) < 30  # loaded from the cache, not rebuilt


def test_failed_build_falls_back_once_with_warning(monkeypatch):
    """auto mode: a build failure warns once and is never retried; strict mode raises."""
    calls = []

    def failing_build(verbose=False):
        calls.append(1)
        raise _plugin.PluginBuildError("building the CUDA kernels failed:\nfake compiler error")

    monkeypatch.setattr(_plugin, "build", failing_build)
    monkeypatch.setattr(_plugin, "_state", {"tried": False, "module": None, "error": None, "path": None})
    with pytest.warns(RuntimeWarning, match="fake compiler error"):
        assert _plugin.get_plugin(strict=False) is None
    assert _plugin.get_plugin(strict=False) is None  # no second warning, no rebuild
    assert calls == [1]
    with pytest.raises(_plugin.PluginBuildError, match="fake compiler error"):
        _plugin.get_plugin(strict=True)
    assert "build failed" in _plugin.build_state()


def test_cache_key_changes_with_sources(monkeypatch, tmp_path):
    key = _plugin.build_key()
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    assert _plugin.build_key() != key
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert _plugin.build_dir().parent == tmp_path


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_reference(dtype):
    dev = torch.device("cuda")
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    f = ops.setup_filter([1, 3, 3, 1], device=dev)
    for up, down, pad in [(1, 1, [1, 2, 1, 2]), (2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 1, 1]), ([2, 1], [1, 2], [0, 1, -1, 2])]:
        x = torch.randn(2, 5, 17, 13, device=dev, dtype=dtype, requires_grad=True)
        y = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, impl="cuda")
        xr = x.detach().clone().requires_grad_(True)
        yr = ops.upfirdn2d(xr, f, up=up, down=down, padding=pad, impl="ref")
        assert torch.allclose(y.float(), yr.float(), atol=tol, rtol=tol)
        dy = torch.randn_like(y)
        assert torch.allclose(torch.autograd.grad(y, x, dy)[0].float(), torch.autograd.grad(yr, xr, dy)[0].float(), atol=tol, rtol=tol)
    for act in ops.ACTIVATIONS:
        x = torch.randn(3, 7, 9, device=dev, dtype=dtype, requires_grad=True)
        b = torch.randn(7, device=dev, dtype=dtype, requires_grad=True)
        y = ops.bias_act(x, b, act=act, clamp=2.0, impl="cuda")
        yr = ops.bias_act(x, b, act=act, clamp=2.0, impl="ref")
        assert torch.allclose(y.float(), yr.float(), atol=tol, rtol=tol)
        dy = torch.randn_like(y)
        g = torch.autograd.grad(y, [x, b], dy)
        gr = torch.autograd.grad(yr, [x, b], dy)
        assert all(torch.allclose(a.float(), c.float(), atol=tol * 10, rtol=tol * 10) for a, c in zip(g, gr))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")
def test_selfcheck_passes_on_gpu():
    from stylegan2_ops._selfcheck import run_selfcheck

    ok, detail = run_selfcheck(torch.device("cuda"))
    assert ok, detail


def test_selfcheck_runs_with_gradients_even_from_no_grad(monkeypatch):
    """The first CUDA call often comes from sampling code under no_grad or inference_mode; the
    self-check compares backward passes, so it must still see gradients enabled (this broke on a
    GPU once: the check 'failed' and the kernels were disabled for the whole training run)."""
    import warnings

    from stylegan2_ops import _dispatch, _selfcheck

    seen = []

    def fake_check(device):
        x = torch.ones(2, requires_grad=True)
        (x * 3).sum().backward()  # raises if grad mode is off or x is an inference tensor
        seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled(), float(x.grad[0])))
        return True, "ok"

    monkeypatch.setattr(_selfcheck, "run_selfcheck", fake_check)
    monkeypatch.setattr(_dispatch, "selfcheck_results", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed check would warn
        with torch.no_grad():
            _dispatch._run_selfcheck(torch.device("cuda", 0))
        with torch.inference_mode():
            _dispatch._run_selfcheck(torch.device("cuda", 1))
    assert seen == [(True, False, 3.0), (True, False, 3.0)]
    assert _dispatch.selfcheck_results[0][0] and _dispatch.selfcheck_results[1][0]
