"""`nada train-many` in one process: targets parsing, batched adapter domains equal to separate
`nada train` runs bit for bit (the independent formulation: one domain, one trainer), full
domains in turn sharing one loaded generator, a failing domain isolated, stop and resume exact,
the job folder's refusals, and the CLI."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from safetensors.torch import load_file

from nada.adapt import TrainConfig, train
from nada.adapt import many as many_mod
from nada.adapt.many import domain_names, train_many
from nada.cli import main
from nada.cli.train_many import parse_targets
from nada.errors import ConfigError
from nada.hooks import RunHooks

ITERS = 4


def shapes_cfg(target, out, **kw):
    base = dict(target=target, out=str(out), iters=ITERS, evaluate=False, sample_every=0, save_every=2,
                sample_seeds="0-1", quiet=True, device="cpu", adapter="stylespace")
    base.update(kw)
    return TrainConfig(**base)


def tensors(path):
    return load_file(str(path))


def same_file(a, b) -> bool:
    ta, tb = tensors(a), tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# --- targets ---------------------------------------------------------------------------------

def test_targets_from_option_and_file():
    text = "# styles\nsketch\n\npixel art --iters 7 --lr=0.5\n'blue star' --source shape --name bs\n"
    got = parse_targets("neon, blue", text)
    assert got == [("neon", {}), ("blue", {}), ("sketch", {}), ("pixel art", {"iters": 7, "lr": 0.5}),
                   ("blue star", {"source": "shape", "name": "bs"})]


@pytest.mark.parametrize("line, words", [
    ("sketch --clip shapes", "--clip cannot be set per domain"),
    ("sketch --iters", "--iters needs a value"),
    ("sketch --iters many", "is not an integer"),
    ("--iters 3", "no target"),
    ("'sketch", "line 1"),
])
def test_targets_file_errors_name_the_line(line, words):
    with pytest.raises(ConfigError, match=words):
        parse_targets(None, line)


def test_domain_names_are_folder_safe_and_unique():
    assert domain_names(["pixel art", "Pixel  Art", "a/b", "..", "neon"]) == [
        "pixel-art", "pixel-art-2", "a-b", "domain", "neon"]


# --- batched adapters --------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", ["stylespace", "modulation"])
def test_batched_domains_equal_separate_runs(tmp_path, adapter):
    """K domains in one batched step give each the numbers `nada train` gives it alone."""
    targets = ["sketch", "neon", "blue"]
    res = train_many([shapes_cfg(t, tmp_path / "x", adapter=adapter) for t in targets], tmp_path / "job")
    assert res.ok and [o.status for o in res.outcomes] == ["done"] * 3
    assert {o.group for o in res.outcomes} == {0}  # one batched group
    for t, o in zip(targets, res.outcomes):
        alone = train(shapes_cfg(t, tmp_path / f"alone-{t}", adapter=adapter))
        assert same_file(o.product, alone.generator_path), t
        a = [json.loads(line) for line in (tmp_path / "job" / t / "metrics.jsonl").read_text().splitlines()]
        b = [json.loads(line) for line in (alone.run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["loss"] for r in a] == [r["loss"] for r in b]
        assert all(r["domains"] == 3 for r in a)
    # several domains per forward: the same training within float rounding (oneDNN may pick
    # other kernels for the larger batch)
    wide = train_many([shapes_cfg(t, tmp_path / "x", adapter=adapter) for t in targets], tmp_path / "wide", chunk=3)
    for o, w in zip(res.outcomes, wide.outcomes):
        la = [json.loads(x)["loss"] for x in (tmp_path / "job" / o.name / "metrics.jsonl").read_text().splitlines()]
        lb = [json.loads(x)["loss"] for x in (tmp_path / "wide" / w.name / "metrics.jsonl").read_text().splitlines()]
        assert max(abs(a - b) for a, b in zip(la, lb)) <= 1e-4
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert [d["name"] for d in summary["domains"]] == targets
    assert all(d["images_per_s"] > 0 for d in summary["domains"])


def test_a_failing_domain_does_not_stop_the_others(tmp_path, monkeypatch):
    from nada.adapt.objective import ClipObjective

    real = ClipObjective.losses_from_features

    def nan_for_neon(self, *a, **kw):
        out = real(self, *a, **kw)
        if self.target == "neon":
            out = {k: v * float("nan") for k, v in out.items()}
        return out

    monkeypatch.setattr(ClipObjective, "losses_from_features", nan_for_neon)
    cfgs = [shapes_cfg(t, tmp_path) for t in ("sketch", "neon", "banana")]
    res = train_many(cfgs, tmp_path / "job")
    status = {o.name: o for o in res.outcomes}
    assert status["sketch"].status == "done" and status["sketch"].iterations == ITERS
    assert status["neon"].status == "failed" and "loss became nan at iteration 1" in status["neon"].error
    assert status["banana"].status == "failed" and "'banana'" in status["banana"].error
    assert not res.ok
    table = many_mod.format_summary(res.outcomes)
    assert "banana: the shapes CLIP does not know the word 'banana'" in table


def test_stop_and_resume_continue_exactly(tmp_path):
    targets = ["sketch", "pixel art"]
    full = train_many([shapes_cfg(t, tmp_path, iters=6) for t in targets], tmp_path / "full")
    stop = threading.Event()
    seen = []

    def on_step(rec):
        seen.append(rec)
        if len(seen) == 2 * 3:  # both domains at iteration 3
            stop.set()

    part = train_many([shapes_cfg(t, tmp_path, iters=6) for t in targets], tmp_path / "job",
                      hooks=RunHooks(on_step=on_step, stop=stop))
    assert [o.status for o in part.outcomes] == ["interrupted"] * 2
    assert [o.iterations for o in part.outcomes] == [3, 3]
    again = train_many([], tmp_path / "job", resume=True)
    assert again.ok
    for a, b in zip(full.outcomes, again.outcomes):
        assert same_file(a.product, b.product), a.name
    # a finished job resumes to nothing new
    assert train_many([], tmp_path / "job", resume=True).ok


def test_full_domains_run_in_turn_sharing_the_loaded_generator(tmp_path, monkeypatch):
    import nada.checkpoints as checkpoints

    calls = []
    real = checkpoints.load_generator

    def counting(*a, **kw):
        calls.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(checkpoints, "load_generator", counting)
    targets = ["sketch", "neon"]
    res = train_many([shapes_cfg(t, tmp_path, adapter="full", iters=2) for t in targets], tmp_path / "job")
    assert res.ok and len(calls) == 1
    monkeypatch.setattr(checkpoints, "load_generator", real)
    for t, o in zip(targets, res.outcomes):
        alone = train(shapes_cfg(t, tmp_path / f"alone-{t}", adapter="full", iters=2))
        assert same_file(o.product, alone.generator_path), t


def test_domains_with_other_layers_train_in_a_group_of_their_own(tmp_path):
    cfgs = [shapes_cfg("sketch", tmp_path, iters=2), shapes_cfg("neon", tmp_path, iters=2, layers="all"),
            shapes_cfg("blue", tmp_path, iters=3, lr=0.5)]
    res = train_many(cfgs, tmp_path / "job")
    assert res.ok and [o.group for o in res.outcomes] == [0, 1, 0]
    alone = train(shapes_cfg("neon", tmp_path / "alone", iters=2, layers="all"))
    assert same_file(res.outcomes[1].product, alone.generator_path)


def test_job_folder_refusals(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists"):
        train_many([shapes_cfg("sketch", tmp_path)], tmp_path / "busy")
    with pytest.raises(ConfigError, match="not a train-many folder"):
        train_many([shapes_cfg("sketch", tmp_path)], tmp_path / "busy", overwrite=True)
    with pytest.raises(ConfigError, match="holds no train-many job"):
        train_many([], tmp_path / "nothing", resume=True)
    assert (tmp_path / "busy" / "thesis.txt").read_text() == "mine"


def test_cli_end_to_end(tmp_path, capsys):
    targets = tmp_path / "targets.txt"
    targets.write_text("sketch --iters 3\nneon\n")
    out = tmp_path / "job"
    rc = main(["train-many", "--targets-file", str(targets), "--adapter", "stylespace", "--iters", "2",
               "--eval-seeds", "8", "--sample-every", "0", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "sketch" in text and "neon" in text and "summary.json" in text
    summary = json.loads((out / "summary.json").read_text())["domains"]
    assert [(d["name"], d["iterations"], d["status"]) for d in summary] == [("sketch", 3, "done"), ("neon", 2, "done")]
    assert all(d["eval"]["n"] == 8 for d in summary)
    assert json.loads((out / "sketch" / "config.json").read_text())["target"] == "sketch"
    # an existing job is refused in one line
    rc = main(["train-many", "--targets", "sketch", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "already exists" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    rc = main(["train-many", "--out", str(tmp_path / "none"), "--quiet"])
    assert rc == 2 and "no targets" in capsys.readouterr().err
    rc = main(["train-many", "--resume", "--targets", "neon", "--out", str(out), "--quiet"])
    assert rc == 2 and "drop --targets" in capsys.readouterr().err
    # the finished job resumes to the same summary
    rc = main(["train-many", "--resume", "--out", str(out), "--quiet"])
    assert rc == 0 and "done" in capsys.readouterr().out


def test_with_the_layer_search_a_domain_draws_alone(tmp_path):
    """Layer search on: each domain's search draws from its own stream, so a domain trains to
    the same numbers beside others as in a job of its own (at batch 2, where more domains per
    forward would change float rounding)."""
    kw = dict(layers="texture", auto_layer_iters=1, auto_layer_k=1, auto_layer_batch=2)
    targets = ["sketch", "neon", "blue"]
    both = train_many([shapes_cfg(t, tmp_path, **kw) for t in targets], tmp_path / "both")
    rows = [json.loads(x) for x in (tmp_path / "both" / "neon" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["search_s"] > 0 for r in rows)
    for t, o in zip(targets, both.outcomes):
        alone = train_many([shapes_cfg(t, tmp_path, **kw)], tmp_path / f"alone-{o.name}")
        assert same_file(o.product, alone.outcomes[0].product), t
        mine = [json.loads(x)["layers"] for x in (tmp_path / "both" / o.name / "metrics.jsonl").read_text().splitlines()]
        theirs = [json.loads(x)["layers"]
                  for x in (tmp_path / f"alone-{o.name}" / o.name / "metrics.jsonl").read_text().splitlines()]
        assert mine == theirs
