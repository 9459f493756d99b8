"""``nada train``: argument parsing → TrainConfig, one-line errors before any work, Ctrl-C
(SIGINT in a subprocess) leaves a resumable checkpoint that a resume completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nada.cli import build_parser, main
from nada.cli.train import config_from_args
from nada.checkpoints import save_generator
from nada.networks import Generator, GeneratorConfig

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory):
    torch.manual_seed(0)
    cfg = GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    path = tmp_path_factory.mktemp("gen") / "tiny.safetensors"
    save_generator(Generator(cfg), path)
    return path


def parse(*argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_args_become_config():
    cfg = parse("--target", "neon", "--iters", "7", "--clip", "a", "--clip", "b", "--clip-weights", "1", "0.5",
                "--layers", "b8.*", "--lambda-global", "0.5", "--quiet")
    assert cfg.target == "neon" and cfg.iters == 7 and cfg.clip == ("a", "b") and cfg.clip_weights == (1.0, 0.5)
    assert cfg.layers == "b8.*" and cfg.auto_layer_iters == 0 and cfg.lambda_global == 0.5 and cfg.quiet
    default = parse("--target", "sketch")
    assert default.generator == "shapes" and default.clip == ("shapes", "shapes-fine") and default.iters == 300
    assert default.layers == "texture" and default.lr == 0.03 and default.batch == 16 and default.auto_layer_iters == 0
    searched = parse("--target", "sketch", "--auto-layer-iters", "1")
    assert searched.layers is None and searched.lr == 0.002 and searched.batch == 2 and searched.auto_layer_k == 2
    assert parse("--target", "sketch", "--batch", "3").batch == 3
    assert default.lr_final == pytest.approx(1 / 3) and searched.lr_final == 1.0
    assert parse("--target", "sketch", "--lr-final", "0.1").lr_final == 0.1
    preset = parse("--target", "sketch", "--preset", "improve-shape", "--mixing", "0.5")
    assert preset.auto_layer_k == "2/3" and preset.mixing == 0.5 and preset.preset == "improve-shape"
    assert parse("--target", "x", "--auto-layer-k", "3").auto_layer_k == 3


def test_help_names_default_sources(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for words in ("official", "shapes", "--resume", "--auto-layer-k", "--style-images", "--quiet"):
        assert words in out


@pytest.mark.parametrize("argv, words", [
    (["--target", "sketch", "--iters", "0"], "iters=0"),
    (["--target", "sketch", "--iters", "-5"], "iters=-5"),
    (["--iters", "5"], "--target"),
    (["--target", "sketch", "--generator", "/nonexistent/g.pt"], "/nonexistent/g.pt"),
    (["--target", "sketch", "--style-images", "/nonexistent/dir"], "exactly one"),
])
def test_errors_are_one_line_and_write_nothing(argv, words, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and err.startswith("nada train: error:")
    assert not out.exists()


def test_empty_style_dir_is_one_line(tmp_path, gen_path, capsys):
    empty = tmp_path / "styles"
    empty.mkdir()
    assert main(["train", "--out", str(tmp_path / "run"), "--generator", str(gen_path), "--style-images", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no images" in err


SIGINT_SCRIPT = textwrap.dedent("""
    import time
    from test_adapt import objective
    from nada.adapt import TrainConfig, train

    class Slow:
        def __init__(self):
            self.inner = objective()
        def global_loss(self, img):
            return self.inner.global_loss(img)
        def losses(self, a, b, w, rng=None):
            time.sleep(0.3)
            return self.inner.losses(a, b, w, rng)

    cfg = TrainConfig(out={out!r}, generator={gen!r}, clip=("standin",), target="sketch", iters={iters},
                      resume={resume}, sample_every=0, save_every=0, quiet=True, device="cpu", auto_layer_batch=2)
    result = train(cfg, Slow())
    print("RESULT", result.iterations, result.interrupted, flush=True)
""")


def test_sigint_leaves_resumable_checkpoint(tmp_path, gen_path):
    out = tmp_path / "run"

    def script(iters, resume):
        return SIGINT_SCRIPT.format(out=str(out), gen=str(gen_path), iters=iters, resume=resume)

    # the child imports the stand-in objective from tests/test_adapt.py
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script(200, False)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    line = [x for x in stdout.splitlines() if x.startswith("RESULT")][0].split()
    done, interrupted = int(line[1]), line[2] == "True"
    assert interrupted and 2 <= done < 200
    assert "resume with" in stderr
    state = torch.load(out / "checkpoints" / "resume.pt", weights_only=True)
    assert state["iteration"] == done
    # the resume picks up there and finishes
    proc = subprocess.run([sys.executable, "-c", script(done + 1, True)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"RESULT {done + 1} False" in proc.stdout
    iters = [json.loads(x)["iter"] for x in metrics.read_text().splitlines()]
    assert iters == list(range(1, done + 2))


@pytest.mark.slow
def test_full_size_formats_through_cli(tmp_path):
    """A random-weight 256² config-f generator in rosinality format + a random-weight open_clip
    ViT-B-32 (weights file) train for 2 iterations through the CLI, with the patch loss (128²
    crops resized by the CLIP preprocessing)."""
    pytest.importorskip("nada.guidance")
    open_clip = pytest.importorskip("open_clip")
    from nada.checkpoints import export_rosinality, load_generator

    torch.manual_seed(0)
    gen = tmp_path / "g256.pt"
    export_rosinality(Generator(GeneratorConfig.preset("256")), gen)
    clip_w = tmp_path / "vitb32_random.pt"
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), clip_w)
    out = tmp_path / "run"
    rc = main(["train", "--generator", str(gen), "--clip", f"ViT-B-32:{clip_w}", "--target", "sketch",
               "--iters", "2", "--auto-layer-batch", "2", "--sample-seeds", "0-1", "--out", str(out),
               "--lambda-patch", "0.5",
               "--quiet", "--device", "cpu"])
    assert rc == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [1, 2]
    assert all(0 <= r["loss_patch"] <= 2 and r["loss"] > r["loss_direction"] for r in records)
    adapted = load_generator(out / "generator_rosinality.pt").generator
    assert adapted.img_resolution == 256
    source = load_generator(gen).generator.state_dict()
    changed = {k for k, v in adapted.state_dict().items() if not torch.equal(v, source[k])}
    assert changed and not any(k.startswith("mapping.") for k in changed)


def test_unknown_clip_model_is_one_line(tmp_path, gen_path, capsys):
    pytest.importorskip("nada.guidance")
    out = tmp_path / "run"
    rc = main(["train", "--out", str(out), "--generator", str(gen_path), "--target", "sketch",
               "--clip", "NoSuchModel-XYZ:openai"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "NoSuchModel-XYZ" in err
    assert not out.exists()
