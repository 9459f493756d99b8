"""``scripts/train_shapes_generator.py``: the render-ahead pool yields exactly the inline data
stream, and a run stopped and resumed ends bit-for-bit where an uninterrupted run does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import train_shapes_generator as tsg


def test_render_ahead_pool_matches_inline_stream():
    size_of = lambda s: 2 + s % 2  # the batch size may change with the step
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


def test_boundary_batches_keep_labels_and_move_only_the_runner_up():
    plain = tsg.batch_z(4, 11, 400, 16)
    moved = tsg.batch_z(4, 11, 400, 16, boundary_frac=0.5, boundary_width=0.3)
    assert torch.equal(moved, tsg.batch_z(4, 11, 400, 16, 0.5, 0.3))  # still a function of (seed, step)
    assert torch.equal(tsg.shape_labels(moved), tsg.shape_labels(plain))
    assert torch.equal(moved[200:], plain[200:])  # only the first half is moved
    changed = moved[:200] != plain[:200]
    assert changed[:, :7].sum() == 0 and changed[:, 12:].sum() == 0  # only shape dims
    assert int(changed.sum(1).max()) == 1  # at most one dim per latent: the runner-up
    top2 = moved[:200, 7:12].topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    assert float(margin.max()) <= 0.3 + 1e-6
    old_top2 = plain[:200, 7:12].topk(2, dim=1).values
    assert bool((margin <= old_top2[:, 0] - old_top2[:, 1] + 1e-6).all())  # never pushed away


def test_lr_scale_cosine_by_step_or_time():
    import math

    assert tsg.lr_scale(10, 10, 110, 0.0, 0.02) == pytest.approx(1.0)
    assert tsg.lr_scale(60, 10, 110, 0.0, 0.02) == pytest.approx(0.02 + 0.98 * 0.5)
    assert tsg.lr_scale(110, 10, 110, 0.0, 0.02) == pytest.approx(0.02)
    assert tsg.lr_scale(500, 10, 110, 0.0, 0.02) == pytest.approx(0.02)  # clamped past the end
    # the time limit wins when it is further along than the step count
    assert tsg.lr_scale(20, 10, 110, 0.75, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(0.75 * math.pi)))
    assert tsg.lr_scale(90, 10, 110, 1.0, 1.0) == 1.0  # --lr-final 1: constant
