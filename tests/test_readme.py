"""The README stays a user's page: short, its links resolve, and its Python API example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme_is_short_and_its_links_resolve():
    assert len(README.splitlines()) < 250
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    assert targets
    missing = [t for t in targets if "://" not in t and not (REPO / t).exists()]
    assert not missing, missing


def test_docs_point_inside_the_repo():
    for doc in (REPO / "docs").glob("*.md"):
        text = doc.read_text()
        assert "../shared" not in text and "SHAPES_WORLD.md" not in text, doc.name
        for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            assert "://" in t or (doc.parent / t).exists(), (doc.name, t)


def test_python_api_example_runs(tmp_path):
    block = README.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "target attainment" in proc.stdout and "(4, 64, 64, 3)" in proc.stdout
    assert (tmp_path / "runs" / "api-sketch" / "generator.safetensors").is_file()
