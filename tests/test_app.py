"""nada.app without a server: the job runner (one at a time, place in line, stop, errors), run
names that cannot leave the runs folder, upload checks, the domain blend, the tab registry."""

from __future__ import annotations

import json
import os
import pickle
import threading
import time

import numpy as np
import pytest
import torch

from nada.app import AppContext, JobRunner
from nada.app.compare import blend_synthesis, metrics_markdown
from nada.app.jobs import CANCELLED, DONE, FAILED, STOPPED
from nada.app.uploads import check_generator, check_style_images
from nada.checkpoints import save_generator
from nada.errors import CheckpointError, ConfigError, DataError
from nada.networks import Generator, GeneratorConfig

from ckpt_builders import nvidia_pickle_bytes
from test_checkpoints import nv_kwargs, random_generator, small_cfg


def _steps(n, delay=0.01, fail=None):
    def fn(hooks):
        for i in range(1, n + 1):
            if hooks.stopping:
                return "stopped"
            time.sleep(delay)
            hooks.step({"iter": i, "loss": 1.0 / i}, n)
            if fail and i == fail[0]:
                raise fail[1]
        return "ok"
    return fn


def test_runner_runs_one_job_at_a_time_in_order():
    runner = JobRunner()
    active, seen = [], []
    lock = threading.Lock()

    def job(tag):
        def fn(hooks):
            with lock:
                active.append(tag)
                assert len(active) == 1, active  # never two at once
            time.sleep(0.05)
            hooks.step({"iter": 1}, 1)
            with lock:
                seen.append(tag)
                active.remove(tag)
            return tag
        return fn

    jobs = [runner.submit(job(i), name=f"j{i}") for i in range(4)]
    assert [j.snapshot().ahead for j in jobs[1:]] == [1, 2, 3]  # first runs (or is about to)
    snaps = [j.wait(10) for j in jobs]
    assert seen == [0, 1, 2, 3] and [s.state for s in snaps] == [DONE] * 4 and [s.result for s in snaps] == seen
    runner.close()


def test_snapshot_reports_progress_rate_and_samples(tmp_path):
    runner = JobRunner()
    png = tmp_path / "p.png"

    def fn(hooks):
        for i in range(1, 6):
            time.sleep(0.02)
            hooks.step({"iter": i, "loss": 0.5}, 5)
        png.write_bytes(b"x")
        hooks.sample(png)
        return 7

    job = runner.submit(fn, name="n")
    snaps = list(job.watch(heartbeat=0.2))
    last = snaps[-1]
    assert last.state == DONE and last.step == 5 and last.total == 5 and last.loss == 0.5
    assert last.sample == png and last.samples == 1 and last.result == 7
    assert 5 < last.rate < 60  # about 50 steps/s at most with 20 ms steps
    assert [s.version for s in snaps] == sorted(s.version for s in snaps)
    runner.close()


def test_stop_cancels_queued_and_stops_running():
    runner = JobRunner()
    first = runner.submit(_steps(500, 0.01), name="long")
    second = runner.submit(_steps(3), name="waits")
    while first.snapshot().step < 2:
        time.sleep(0.01)
    assert second.snapshot().ahead == 1
    second.stop()
    assert second.snapshot().state == CANCELLED
    first.stop()
    done = first.wait(10)
    assert done.state == STOPPED and done.result == "stopped" and done.step < 500
    runner.close()


def test_failures_are_one_line_messages():
    runner = JobRunner()
    bad = runner.submit(_steps(3, fail=(2, ConfigError("bad value", "fix it"))), name="user error")
    bug = runner.submit(_steps(3, fail=(1, ZeroDivisionError("boom"))), name="bug")
    after = runner.submit(_steps(1), name="after")
    assert bad.wait(10).state == FAILED and bad.snapshot().error == "bad value (fix it)"
    msg = bug.wait(10).error
    assert msg.startswith("internal error: ZeroDivisionError: boom") and "\n" not in msg
    assert after.wait(10).state == DONE  # the worker survives both
    runner.close()


def _fake_run(root, name, generator="shapes"):
    run = root / name
    (run / "samples").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"generator": generator, "target": "sketch", "source": "photo"}))
    (run / "generator.safetensors").write_bytes(b"g")
    (run / "samples" / "final.png").write_bytes(b"p")
    return run


def test_run_names_never_leave_the_runs_folder(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "good")
    _fake_run(runs, "group/nested")
    _fake_run(tmp_path, "outside")
    (runs / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "secret.txt").write_text("no")
    (runs / "good" / "samples" / "final.png").unlink()
    (runs / "good" / "samples" / "final.png").symlink_to(tmp_path / "secret.txt")
    ctx = AppContext(runs)
    assert {r.name for r in ctx.list_runs()} == {"good", "group/nested"}  # not the link out
    assert ctx.run_dir("good") == (runs / "good").resolve()
    assert ctx.run_dir("group/nested") == (runs / "group" / "nested").resolve()
    for bad in ["", "..", "../outside", "good/..", "/etc", "good/../../outside", "link", ".uploads",
                "group/nested/x", "a\\..\\b", "good\x00", "%2e%2e"]:
        with pytest.raises(ConfigError, match="no run named"):
            ctx.run_dir(bad)
    assert ctx.run_file("good", "generator").read_bytes() == b"g"
    with pytest.raises(ConfigError, match="unknown download"):
        ctx.run_file("good", "../../secret.txt")
    with pytest.raises(ConfigError, match="has no samples/final.png"):  # a link out of the run
        ctx.run_file("good", "samples")
    exported = ctx.export("group/nested", "samples")
    assert exported.name == "group_nested_final.png" and exported.read_bytes() == b"p"
    assert exported.is_relative_to(ctx.scratch_dir)
    ctx.close()


def test_uploads_are_checked_without_running_code(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    G = random_generator(small_cfg(8))
    good = save_generator(G, tmp_path / "good.safetensors")
    assert "8×8" in check_generator(good)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    (tmp_path / "g_ema.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), nv_kwargs(G.cfg), g_ema_override=Evil()))
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:100])
    (tmp_path / "notes.txt").write_text("hello")
    for name, words in [("evil.pkl", "refused"), ("g_ema.pkl", "G_ema"), ("cut.safetensors", "cut.safetensors"),
                        ("notes.txt", "not a checkpoint file")]:
        with pytest.raises(CheckpointError, match=words) as info:
            check_generator(tmp_path / name)
        assert str(tmp_path) not in str(info.value)  # the page never sees server paths
    assert not marker.exists()
    from PIL import Image

    Image.new("RGB", (16, 16), "red").save(tmp_path / "ok.png")
    (tmp_path / "fake.png").write_text("not an image")
    assert check_style_images([tmp_path / "ok.png"]) == 1
    with pytest.raises(DataError, match="'fake.png' cannot be read as an image"):
        check_style_images([tmp_path / "ok.png", tmp_path / "fake.png"])
    with pytest.raises(DataError, match="'notes.txt' is not an image file"):
        check_style_images([tmp_path / "notes.txt"])
    with pytest.raises(DataError, match="no style images"):
        check_style_images([])


def test_blend_is_exact_at_both_ends_and_linear_between():
    cfg = GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    torch.manual_seed(0)
    frozen, adapted = Generator(cfg), Generator(cfg)
    adapted.mapping.load_state_dict(frozen.mapping.state_dict())
    out = Generator(cfg)
    for alpha, ref in [(0.0, frozen), (1.0, adapted)]:
        blend_synthesis(out, frozen, adapted, alpha)
        assert all(torch.equal(v, ref.synthesis.state_dict()[k]) for k, v in out.synthesis.state_dict().items())
    blend_synthesis(out, frozen, adapted, 0.25)
    key = next(k for k, v in frozen.synthesis.state_dict().items() if v.is_floating_point() and v.numel() > 1)
    f, a = frozen.synthesis.state_dict()[key], adapted.synthesis.state_dict()[key]
    assert torch.allclose(out.synthesis.state_dict()[key], 0.75 * f + 0.25 * a)
    with pytest.raises(ConfigError, match="domain blend"):
        blend_synthesis(out, frozen, adapted, 1.5)


def test_metrics_markdown_is_a_table():
    text = metrics_markdown({"target": "sketch", "target_kind": "style", "n": 4, "shape_preserved": 0.5,
                             "size_abs_change_px": 0.25})
    rows = text.splitlines()
    assert rows[0] == "| metric | value |" and "| target | sketch (style) |" in rows
    assert "| shape preserved | 0.500 |" in rows and "| mean \\|size change\\| (px) | 0.250 |" in rows
    assert all(len(r.replace("\\|", "")) - len(r.replace("\\|", "").replace("|", "")) == 3 for r in rows)


def test_tabs_are_registered_and_the_app_builds(tmp_path):
    import gradio as gr

    from nada.app import build_app
    from nada.app.ui import tab_builders

    titles = [t for t, _ in tab_builders()]
    assert titles[:2] == ["Train", "Explore"]
    ctx = AppContext(tmp_path / "runs")
    assert isinstance(build_app(ctx), gr.Blocks)
    ctx.close()


def test_grid_of_two_runs_shares_the_frozen_row():
    from nada.app.compare import RunView, compose

    a = np.zeros((3, 8, 8, 3), np.uint8)
    views = [RunView("r1", a, a + 1, "shapes"), RunView("r2", a, a + 2, "shapes")]
    grid = compose(views, pad=0)
    assert grid.shape == (24, 24, 3)  # frozen, r1, r2
    assert (grid[8:16] == 1).all() and (grid[16:] == 2).all()
