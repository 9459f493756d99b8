"""The built wheel carries the shapes world: installed outside the checkout it runs ``nada info``
and the main command offline; the wheel stays small and lists every package of the source tree."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _source_packages() -> set[str]:
    found = set()
    for root in ("nada", "stylegan2_ops"):
        for init in (REPO / root).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_pyproject_lists_every_package():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _source_packages() <= listed, sorted(_source_packages() - listed)
    assert "nada._pretrained" in listed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)]
    try:
        import setuptools  # noqa: F401

        cmd.insert(4, "--no-build-isolation")  # build with this venv's setuptools: no download
    except ImportError:
        pass
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("stylegan_nada-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_holds_the_shapes_world_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("shapes_generator.safetensors", "shapes_oracle.safetensors", "shapes_clip/model.safetensors",
              "shapes_clip_fine/model.safetensors", "MANIFEST.json"):
        assert f"nada/_pretrained/{f}" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "scripts/")) or n.endswith(".png")]
    assert wheel.stat().st_size < 12 * 2**20


@pytest.mark.slow
def test_installed_wheel_trains_offline_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The wheel's files unpacked into the fresh venv (what pip does, without re-installing torch);
    # this venv's dependencies are reachable through a .pth line, which does not run this venv's
    # editable-install hooks, so `nada` can only come from the wheel.
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(purelib)
    deps = [p for p in site.getsitepackages() if Path(p, "torch").is_dir()]
    Path(purelib, "_nada_test_deps.pth").write_text("\n".join(deps) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NADA_PRETRAINED", "PYTHONPATH")}
    env["HF_HUB_OFFLINE"] = "1"

    def nada(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(py), "-m", "nada", *argv], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)

    where = subprocess.run([str(py), "-c", "import nada; print(nada.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(purelib), where
    info = nada("info")
    assert info.returncode == 0, info.stderr
    line = [x for x in info.stdout.splitlines() if "shapes world" in x][0]
    assert "installed package nada._pretrained" in line and purelib in line, line
    run = nada("train", "--source", "photo", "--target", "sketch", "--iters", "5", "--out", "run", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "run" / "generator.safetensors").is_file()
    assert (work / "run" / "eval.json").is_file()
