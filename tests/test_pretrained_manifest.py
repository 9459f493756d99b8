"""pretrained/: MANIFEST.json lists every shipped file with its true sha256 and size, and the
folder stays under 25 MB."""

import json

import make_manifest  # scripts/, on pytest's pythonpath
import pytest

from nada.paths import pretrained_dir


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
