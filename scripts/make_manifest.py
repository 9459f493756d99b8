"""Write ``pretrained/MANIFEST.json``: every shipped file's sha256 and size, the command that
produced it, and the metrics measured for it (from ``*_metrics.json`` files beside it).

    python scripts/make_manifest.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from nada.paths import pretrained_dir

# file-name prefix -> how it was made
PRODUCERS = {
    "shapes_oracle": "python scripts/train_shapes_oracle.py --steps 2400 --threads 1 --seed 0",
    # longer prefixes first: the first prefix a file name starts with wins
    "shapes_clip_fine": (
        "python scripts/train_shapes_clip.py --steps 9000 --lr 2e-3 --shape-mention 0.8 --jitter 0.5 --patch-size 8 "
        "--threads 1 (70.7 min on 1 CPU thread; about 41 min on 2; see shapes_clip_fine/*.json)"
    ),
    "shapes_clip": "python scripts/train_shapes_clip.py (see the metadata in shapes_clip/*.json)",
    "shapes_generator": (
        "python scripts/train_shapes_generator.py in 6 resumed stages (stages 1-4 each --init the previous export, "
        "5-6 resume its run-dir state; the last stage's command is in the file's metadata): 1. --steps 6000 "
        "--coarse-steps 900 --lr 0.004 --mapping-lr-boost 100 --beta1 0 --shape-head 0 (2 CPU cores, 43 min; "
        "rotated targets); 2. --batch 128 --lr 0.002 --ema-beta 0.995 --device cuda --workers 7 (one H200, 6.6 min, "
        "10283 steps; rotated targets); 3. --batch 16 --lr 0.002 --ema-beta 0.99 --threads 1 (1 CPU thread, 9 min, "
        "~2000 steps; upright targets from here on); 4. --batch 128 --lr 0.002 --ema-beta 0.995 --device cuda "
        "--workers 14 (one H200, 2.4 min, 5416 steps); 5. --batch 32 --lr 0.001 --ema-beta 0.99 --threads 2 "
        "(2 CPU cores, 78 min, to step 9078); 6. --batch 128 --lr 0.002 --lr-final 0.02 --ema-beta 0.995 "
        "--device cuda --workers 7 (one H100, 8.3 min, 12698 steps to step 21776, cosine lr annealing); "
        "stages 2-6 with --beta1 0.9 --shape-head 0.5; then the script's RECIPE written into the header "
        "metadata (nada_recipe; tensors unchanged, 2026-12-02; its adapters part added 2026-12-03)"
    ),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(root: Path) -> dict:
    files = {}
    # the package marker (__init__.py, its bytecode) is code, not a shipped model
    shipped = (p for p in root.rglob("*") if p.is_file() and p.name != "MANIFEST.json"
               and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)
    for path in sorted(shipped):
        rel = path.relative_to(root).as_posix()
        prefix = next((k for k in PRODUCERS if rel.startswith(k)), None)
        entry = {"sha256": sha256(path), "bytes": path.stat().st_size}
        if prefix:
            entry["produced_by"] = PRODUCERS[prefix]
            metrics = root / f"{prefix}_metrics.json"
            if metrics.exists() and metrics != path:
                entry["metrics_file"] = metrics.name
        files[rel] = entry
    return {"files": files, "total_bytes": sum(e["bytes"] for e in files.values())}


def main() -> int:
    root = pretrained_dir()
    manifest = build_manifest(root)
    out = root / "MANIFEST.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(out)
    print(f"wrote {out}: {len(manifest['files'])} files, {manifest['total_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
