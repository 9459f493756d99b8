"""nada.hooks.RunHooks in the trainer: step and sample callbacks fire, and hooks.stop ends a run
as Ctrl-C does, with a resumable checkpoint that ``nada train --resume`` continues exactly."""

from __future__ import annotations

import json
import threading

import torch

from nada.adapt import train
from nada.checkpoints import load_generator
from nada.cli import main as nada_main
from nada.hooks import RunHooks
from test_adapt import gen_path, run_cfg  # noqa: F401  (fixture)


def test_hooks_fire_in_order(gen_path, tmp_path):  # noqa: F811
    events = []
    hooks = RunHooks(on_step=lambda r: events.append(("step", r["iter"], r["iters"], r["loss"])),
                     on_sample=lambda p: events.append(("sample", p.name, p.is_file())))
    result = train(run_cfg(gen_path, tmp_path / "run", clip=("shapes",), iters=4, sample_every=2), hooks=hooks)
    assert not result.interrupted
    assert [e[:3] for e in events] == [("step", 1, 4), ("step", 2, 4), ("sample", "iter_000002.png", True),
                                       ("step", 3, 4), ("step", 4, 4), ("sample", "final.png", True)]
    logged = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e[3] for e in events if e[0] == "step"] == logged


def test_stop_leaves_a_run_that_resume_continues_exactly(gen_path, tmp_path):  # noqa: F811
    kw = dict(clip=("shapes",), iters=5, sample_every=0, save_every=0, auto_layer_k=2, auto_layer_batch=2)
    full = train(run_cfg(gen_path, tmp_path / "full", **kw))
    stop = threading.Event()

    def on_step(record):
        if record["iter"] == 2:
            stop.set()  # set mid-run, from the callback, as the web demo's Stop button does

    part = train(run_cfg(gen_path, tmp_path / "part", **kw), hooks=RunHooks(on_step=on_step, stop=stop))
    assert part.interrupted and part.iterations == 2 and part.generator_path is None
    assert (tmp_path / "part" / "checkpoints" / "resume.pt").is_file()
    assert not (tmp_path / "part" / "generator.safetensors").exists()
    assert nada_main(["train", "--resume", str(tmp_path / "part"), "--quiet"]) == 0
    a = load_generator(full.generator_path).generator.state_dict()
    b = load_generator(tmp_path / "part" / "generator.safetensors").generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    iters = [json.loads(x)["iter"] for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert iters == [1, 2, 3, 4, 5]
