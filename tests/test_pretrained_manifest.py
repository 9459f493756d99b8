"""pretrained/: MANIFEST.json lists every shipped file with its true sha256 and size, and the
folder stays under 25 MB."""

import json

import pytest

from nada.paths import pretrained_dir

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("make_manifest", Path(__file__).parent.parent / "scripts" / "make_manifest.py")
make_manifest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_manifest)


def test_manifest_matches_files():
    root = pretrained_dir()
    path = root / "MANIFEST.json"
    if not path.exists():
        pytest.skip("no MANIFEST.json yet (run scripts/make_manifest.py)")
    manifest = json.loads(path.read_text())
    assert manifest == make_manifest.build_manifest(root), "MANIFEST.json is stale: run scripts/make_manifest.py"


def test_pretrained_under_25_mb():
    root = pretrained_dir()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 25 * 1024 * 1024, f"pretrained/ is {total / 1e6:.1f} MB"
