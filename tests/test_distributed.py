"""torchrun on CPU (gloo): `train-many` sharded over 2 processes gives the domains of the
single-process job bit for bit; `nada train` data parallel over 2 processes at batch B equals
one process at batch 2B within float tolerance; a rank that dies fails the job, bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nada.adapt import TrainConfig, train


def torchrun(args, tmp_path, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NADA_DIST_TIMEOUT": "120", "NADA_TEST_JOB": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "nada", *args]
    return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_train_many_sharded_equals_one_process(tmp_path):
    targets = ["sketch", "neon", "pixel art"]
    common = ["--adapter", "stylespace", "--iters", "4", "--no-eval", "--sample-every", "0", "--quiet"]
    rc, out = finish(torchrun(["train-many", "--targets", ",".join(targets), "--out", str(tmp_path / "dist"),
                               *common], tmp_path))
    assert rc == 0, out
    # the single process with the ranks' thread count (torchrun gives each rank one thread): a
    # different count may round reductions differently on some CPUs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "nada", "train-many", "--targets", ",".join(targets), "--out",
                          str(tmp_path / "one"), *common], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    summary = json.loads((tmp_path / "dist" / "summary.json").read_text())["domains"]
    assert [d["status"] for d in summary] == ["done"] * 3
    assert [d["name"] for d in summary] == ["sketch", "neon", "pixel-art"]
    for name in ("sketch", "neon", "pixel-art"):
        a = load_file(str(tmp_path / "one" / name / "domain.safetensors"))
        b = load_file(str(tmp_path / "dist" / name / "domain.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # rank 1 trained only the middle domain; rank 0 the others (domain i on rank i mod 2)
    assert [d["group"] for d in summary] == [0, 0, 0]
    steps = [json.loads(line) for line in (tmp_path / "dist" / "neon" / "metrics.jsonl").read_text().splitlines()]
    assert {r["domains"] for r in steps} == {1}


def test_data_parallel_train_equals_twice_the_batch(tmp_path):
    """2 ranks × batch 8 against 1 process × batch 16: the same latents (every rank draws the
    whole batch and trains its half), gradients averaged by DDP. Tolerance: per-iteration loss
    within 5e-4 and rendered images within 1e-2 (max abs, images in [-1, 1]; the 4 iterations
    move them by more than 0.05); measured 5e-5 and 1.0e-3: the sum over 16 samples and the mean
    of two sums over 8 round differently, and Adam's normalised steps carry that into the
    weights, more or less by CPU."""
    from nada.checkpoints import load_generator
    from nada.networks.sampling import z_from_seeds

    common = ["--target", "sketch", "--iters", "4", "--no-eval", "--sample-every", "0", "--quiet"]
    rc, out = finish(torchrun(["train", *common, "--batch", "8", "--out", str(tmp_path / "dp")], tmp_path))
    assert rc == 0, out
    one = train(TrainConfig(target="sketch", iters=4, batch=16, evaluate=False, sample_every=0, quiet=True,
                            device="cpu", out=str(tmp_path / "one")))
    la = [json.loads(x)["loss"] for x in (tmp_path / "dp" / "metrics.jsonl").read_text().splitlines()]
    lb = [r["loss"] for r in one.history]
    assert len(la) == len(lb) == 4
    assert max(abs(a - b) for a, b in zip(la, lb)) <= 5e-4
    cfg = json.loads((tmp_path / "dp" / "config.json").read_text())
    assert cfg["batch"] == 8
    A = load_generator(tmp_path / "dp" / "generator.safetensors").generator
    B = load_generator(one.generator_path).generator
    z = z_from_seeds(range(8), A.z_dim)
    with torch.no_grad():
        diff = (A(z, noise_mode="const") - B(z, noise_mode="const")).abs().max().item()
    assert diff <= 1e-2
    # the two runs did learn (the comparison is not between two untouched copies)
    G0 = load_generator(_shapes()).generator
    with torch.no_grad():
        assert (A(z, noise_mode="const") - G0(z, noise_mode="const")).abs().max().item() > 0.05


def _shapes():
    from nada.hub import resolve_generator

    return resolve_generator("shapes")


def _rank_pid(job: Path, rank: int) -> int | None:
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"NADA_TEST_JOB={job}".encode() in env and f"RANK={rank}".encode() in env \
                and b"TORCHELASTIC_RUN_ID=none" not in env and any(e.startswith(b"LOCAL_RANK=") for e in env):
            return int(d.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_dead_rank_fails_the_job_with_a_message(tmp_path):
    proc = torchrun(["train-many", "--targets", "sketch,neon", "--adapter", "stylespace", "--iters", "300",
                     "--no-eval", "--sample-every", "0", "--quiet", "--out", str(tmp_path / "job")], tmp_path)
    metrics = tmp_path / "job" / "neon" / "metrics.jsonl"  # rank 1's domain
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    pid = _rank_pid(tmp_path, 1)
    assert pid is not None, "rank 1 not found"
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    rc, out = finish(proc, timeout=120)
    assert rc != 0
    assert time.monotonic() - t0 < 90
    assert "FAILED" in out or "ChildFailedError" in out, out[-2000:]
    assert "SIGKILL" in out or "Signal 9" in out, out[-2000:]
