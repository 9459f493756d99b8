"""``scripts/train_shapes_generator.py``: the render-ahead pool yields exactly the inline data
stream, and a run stopped and resumed ends bit-for-bit where an uninterrupted run does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train_shapes_generator as tsg  # noqa: E402


def test_render_ahead_pool_matches_inline_stream():
    size_of = lambda s: 2 + s % 2  # noqa: E731  (batch size may change with the step)
    inline = list(tsg.batches(3, 5, 9, size_of, 16, workers=0))
    stream = tsg.batches(3, 5, 9, size_of, 16, workers=2)
    pooled = list(stream)
    assert [s for s, _, _ in pooled] == [5, 6, 7, 8]
    for (s0, z0, r0), (s1, z1, r1) in zip(inline, pooled):
        assert s0 == s1 and torch.equal(z0, z1) and np.array_equal(r0, r1)
        assert r0.shape == (size_of(s0), 64, 64, 3)


def test_early_close_stops_the_pool():
    stream = tsg.batches(0, 0, 1000, lambda s: 2, 16, workers=1)
    next(stream)
    stream.close()  # must return promptly (the pool renders at most 2 steps ahead)


def _args(tmp: Path, steps: int) -> list[str]:
    return ["--steps", str(steps), "--coarse-steps", "2", "--batch", "2", "--coarse-batch", "2", "--threads", "1",
            "--run-dir", str(tmp / "run"), "--out", str(tmp / "g.safetensors")]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resume_equals_uninterrupted_run(tmp_path):
    tsg.main(_args(tmp_path / "a", 4))
    tsg.main(_args(tmp_path / "b", 3))  # stops after 3 steps (coarse phase, then 1 full-res step)
    tsg.main(_args(tmp_path / "b", 4))  # resumes from run/state.pt
    a = torch.load(tmp_path / "a" / "run" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key in ("G", "ema", "head"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), (key, name)
    assert (tmp_path / "b" / "g.safetensors").is_file()
