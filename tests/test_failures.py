"""How nada fails: a run directory used by two processes, outputs that cannot be written (a
pseudo file system, a path under a file, a full disk), resuming what cannot be resumed, options
a resume cannot change, and an evaluation that would overwrite an earlier one."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
import torch

from nada.checkpoints import save_generator
from nada.cli import main
from nada.networks import Generator, GeneratorConfig
from nada.outputs import RunLock
from nada.shapes.evaluate import write_json


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> str:
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    path = tmp_path_factory.mktemp("gen") / "tiny.safetensors"
    save_generator(Generator(cfg), path)
    return str(path)


def _train(gen, out, *extra) -> list[str]:
    return ["train", "--generator", gen, "--clip", "shapes", "--target", "sketch", "--iters", "2", "--batch", "1",
            "--auto-layer-batch", "1", "--sample-every", "0", "--save-every", "1", "--sample-seeds", "0",
            "--quiet", "--out", str(out), *extra]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_second_process_on_the_same_run_directory_is_refused(gen, tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):  # what a running `nada train --out run` holds
        assert main(_train(gen, out)) == 2
        assert "in use by another nada process" in _one_line(capsys)
        assert not (out / "config.json").exists()
    assert main(_train(gen, out)) == 0  # released: the run goes ahead


@pytest.mark.parametrize("where", ["/proc/nada_run", "FILE/run"])
def test_unwritable_outputs_are_one_line_before_any_work(gen, tmp_path, capsys, where):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = where.replace("FILE", str(afile))
    assert main(_train(gen, out)) == 2
    assert "cannot write" in _one_line(capsys)
    for argv in (["generate", "--generator", gen, "--seeds", "0", "--out", f"{out}/g.png"],
                 ["convert", gen, f"{out}/g.safetensors"],
                 ["mapper", "train", "--generator", gen, "--clip", "shapes", "--target", "blue", "--out", out]):
        assert main(argv) == 2, argv
        assert "cannot write" in _one_line(capsys)


def test_full_disk_leaves_nothing_half_written(gen, tmp_path):
    """A file-size limit (as a full disk): one line, no output and no temp file left."""
    out = tmp_path / "big.safetensors"
    limit = 20_000  # bytes; the converted generator is larger

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "nada", "convert", gen, str(out)], capture_output=True, text=True,
                          preexec_fn=cap, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "nothing was written" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_run_stopped_before_its_first_checkpoint_names_the_way_out(gen, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what a run killed while loading leaves
    assert main(["train", "--resume", str(out)]) == 2
    err = _one_line(capsys)
    assert "nothing to resume" in err and "--overwrite" in err
    assert main(_train(gen, out)) == 2
    err = _one_line(capsys)
    assert "already exists" in err and "--overwrite" in err and "no checkpoint" in err
    assert main(_train(gen, out, "--overwrite")) == 0


def test_resume_honours_what_may_change_and_refuses_the_rest(gen, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train(gen, out)) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--iters", "3", "--lr", "0.5"]) == 2
    assert "--lr cannot change when resuming" in _one_line(capsys)
    assert main(["train", "--resume", str(out), "--iters", "3", "--no-eval", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "trained 1 iterations (3 in all)" in printed
    saved = json.loads((out / "config.json").read_text())
    assert saved["iters"] == 2  # config.json records the run as started


def test_an_evaluation_never_destroys_an_earlier_one(tmp_path):
    path = tmp_path / "eval.json"
    write_json({"target": "sketch", "n": 256, "shape_preserved": 0.9, "clip_alignment": 0.94}, path)
    write_json({"target": "sketch", "n": 256, "shape_preserved": 0.9, "clip_alignment": None}, path)
    assert json.loads(path.read_text())["clip_alignment"] == 0.94  # kept, not dropped
    write_json({"target": "sketch", "n": 64, "shape_preserved": 0.8, "clip_alignment": None}, path)
    now, before = json.loads(path.read_text()), json.loads((tmp_path / "eval.1.json").read_text())
    assert now["n"] == 64 and now["shape_preserved"] == 0.8 and before["n"] == 256


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "mapper"])
def test_killed_at_20_random_moments_resumes_to_the_same_result(gen, tmp_path, command):
    """SIGKILL `nada train` / `nada mapper train` at 20 random moments (a checkpoint every step,
    so many kills land while one is being written); each time the run continues from its last
    complete checkpoint (or, killed before the first, starts again as the message says), and the
    final generator / mapper equals an uninterrupted run's bit for bit."""
    import random
    import time

    from safetensors.torch import load_file

    nada = [sys.executable, "-m", "nada"]
    if command == "train":
        steps, result = "12", "generator.safetensors"

        def start(out, *extra):
            cmd = nada + _train(gen, out, "--no-eval", *extra)
            i = cmd.index("--iters")
            return cmd[: i + 1] + [steps] + cmd[i + 2 :]

        def resume(out):
            return nada + ["train", "--resume", str(out), "--iters", steps, "--quiet"]
    else:
        steps, result = "16", "mapper.safetensors"

        def start(out, *extra):
            return nada + ["mapper", "train", "--generator", gen, "--clip", "shapes", "--target", "blue", "--steps",
                           steps, "--batch", "2", "--num-latents", "8", "--save-every", "1", "--sample-every", "0",
                           "--no-eval", "--quiet", "--out", str(out), *extra]

        def resume(out):
            return nada + ["mapper", "train", "--resume", str(out), "--steps", steps, "--quiet"]

    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    subprocess.run(start(ref), check=True, capture_output=True, timeout=600)
    span = time.perf_counter() - t0
    out = tmp_path / "killed"
    rng = random.Random(0)
    outcomes = {"killed": 0, "finished": 0, "restarted": 0}

    def next_command():
        if (out / "checkpoints" / "resume.pt").is_file():
            return resume(out)
        if out.exists():
            outcomes["restarted"] += 1
        return start(out, "--overwrite")

    for _ in range(20):
        proc = subprocess.Popen(next_command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, span))
        if proc.poll() is None:
            proc.kill()
            outcomes["killed"] += 1
        else:
            outcomes["finished"] += 1
        proc.wait()
    subprocess.run(next_command(), check=True, capture_output=True, timeout=600)
    a, b = load_file(ref / result), load_file(out / result)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(command, outcomes)
    assert outcomes["killed"] >= 10
