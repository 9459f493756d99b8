"""Videos: a morph frame equals the image of an explicitly blended state dict; the timeline;
walks start on their keyframes; MP4 and GIF decode (imageio) with the right frame count and
size; ``nada video`` end to end (60 frames, 4 seeds, 3 runs) and its one-line errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from nada.cli import main
from nada.networks import Generator, GeneratorConfig
from nada.networks.sampling import to_uint8, z_from_seeds
from nada.video import (
    VideoConfig,
    morph_frames,
    read_video,
    slerp,
    timeline,
    walk_frames,
    write_video,
)


def _tiny(seed: int) -> Generator:
    torch.manual_seed(seed)
    return Generator(GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128,
                                     channel_max=16)).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pair():
    G0, G1 = _tiny(0), _tiny(1)
    G1.mapping.load_state_dict(G0.mapping.state_dict())  # adapted twins share the mapping
    with torch.no_grad():
        ws = G0.mapping(z_from_seeds([0, 1], 8))
    return G0, G1, ws


def test_morph_frame_equals_an_explicit_blend_of_the_two_state_dicts(pair):
    G0, G1, ws = pair
    cfg = VideoConfig(frames=5, size=16, pad=0, cols=2)
    frames = list(morph_frames([G0, G1], ws, cfg))
    assert len(frames) == 5
    sd0, sd1 = G0.state_dict(), G1.state_dict()
    for i, alpha in enumerate([0.0, 0.25, 0.5, 0.75, 1.0]):
        blended = _tiny(9)
        blended.load_state_dict({k: (1 - alpha) * sd0[k] + alpha * sd1[k] if sd0[k].is_floating_point() else sd0[k]
                                 for k in sd0})
        with torch.no_grad():
            want = to_uint8(blended.synthesis(ws, noise_mode="const"))
        got = [frames[i][:, :16], frames[i][:, 16:]]
        for j in range(2):
            assert np.abs(got[j].astype(int) - want[j].astype(int)).max() <= 1, (i, j)
    assert not np.array_equal(frames[0], frames[2])


def test_timeline_spacing_and_loop():
    assert timeline(5, 1, False) == [(0, 0.0), (0, 0.25), (0, 0.5), (0, 0.75), (0, 1.0)]
    assert timeline(6, 3, True) == [(0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5)]
    assert timeline(3, 2, False) == [(0, 0.0), (1, 0.0), (1, 1.0)]


def test_walks_pass_through_their_keyframes(pair):
    G0, G1, ws = pair
    z = z_from_seeds([0, 1, 2], 8)
    cfg = VideoConfig(frames=5, size=16, pad=0)
    frames = list(walk_frames([G0, G1], z, "z", cfg))
    with torch.no_grad():
        first = [to_uint8(G(z[:1]))[0] for G in (G0, G1)]
        middle = to_uint8(G0(z[1:2]))[0]
        last = to_uint8(G1(z[2:3]))[0]
    assert np.array_equal(frames[0][:, :16], first[0]) and np.array_equal(frames[0][:, 16:], first[1])
    assert np.abs(frames[2][:, :16].astype(int) - middle.astype(int)).max() <= 1
    assert np.abs(frames[4][:, 16:].astype(int) - last.astype(int)).max() <= 1
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    w_frames = list(walk_frames([G0], ws, "w", VideoConfig(frames=3, size=16, pad=0)))
    with torch.no_grad():
        mid = to_uint8(G0.synthesis((ws[:1] + ws[1:]) / 2))[0]
    assert np.abs(w_frames[1].astype(int) - mid.astype(int)).max() <= 1


@pytest.mark.parametrize("ext", ["mp4", "gif"])
def test_videos_decode_with_their_frame_count_and_size(tmp_path, ext):
    frames = (np.full((50, 70, 3), 10 * i, np.uint8) for i in range(12))  # a generator: streamed
    info = write_video(tmp_path / f"v.{ext}", frames, VideoConfig(frames=12, fps=10), progress=False)
    n, size = read_video(tmp_path / f"v.{ext}")
    assert n == info["frames"] == 12
    assert size == (info["width"], info["height"])
    assert size == ((80, 64) if ext == "mp4" else (70, 50))  # MP4 pads to H.264's 16 px blocks
    assert [p.name for p in tmp_path.iterdir()] == [f"v.{ext}"]  # no temp file left
    from nada.errors import ConfigError

    with pytest.raises(ConfigError, match="no frames"):
        write_video(tmp_path / f"empty.{ext}", iter([]), VideoConfig(), progress=False)
    assert not (tmp_path / f"empty.{ext}").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from test_edit import make_run

    root = tmp_path_factory.mktemp("video-runs")
    return [make_run(root, n, t, 0.05 * (i + 1), seed=i)[0]
            for i, (n, t) in enumerate([("a", "sketch"), ("b", "pixel art"), ("c", "neon")])]


def test_nada_video_60_frames_of_4_seeds_across_3_runs(runs, tmp_path, capsys):
    out = tmp_path / "morph.mp4"
    t0 = time.perf_counter()
    assert main(["video", "--runs", *map(str, runs), "--seeds", "0-3", "--frames", "60", "--size", "64",
                 "--out", str(out), "--quiet"]) == 0
    seconds = time.perf_counter() - t0
    assert seconds < 30, seconds  # the bound on 2 cores (measured ~3 s with loading)
    n, size = read_video(out)
    assert n == 60 and size == (144, 144)  # 2x2 grid of 64 px cells + 2 px pad = 130, padded to 144
    assert "60 frames" in capsys.readouterr().out
    assert main(["video", "--runs", str(runs[0]), "--frames", "3", "--size", "16", "--out", str(out), "--quiet"]) == 0
    assert read_video(out)[0] == 3  # an existing video is replaced
    gif = tmp_path / "walk.gif"
    assert main(["video", "--runs", str(runs[0]), "--walk", "z", "--seeds", "1,2", "--loop", "--frames", "8",
                 "--size", "32", "--out", str(gif), "--quiet"]) == 0
    assert read_video(gif) == (8, (66, 32))


def test_bad_video_inputs_are_one_line(runs, tmp_path, capsys):
    cases = [
        (["--out", str(tmp_path / "v.avi")], "unknown video format"),
        (["--seeds", "0-1", "--latents", str(tmp_path / "l.safetensors")], "one of --seeds"),
        (["--walk", "z", "--latents", str(tmp_path / "l.safetensors")], "--walk z"),
        (["--no-frozen"], "two generators"),
        (["--frames", "1"], "frames=1"),
        (["--size", "8"], "size=8"),
        (["--walk", "w", "--seeds", "3"], "two keyframes"),
        (["--latents", str(tmp_path / "l.safetensors")], "does not exist"),
    ]
    for argv, match in cases:
        full = ["video", "--runs", str(runs[0]), *argv]
        if "--out" not in argv:
            full += ["--out", str(tmp_path / "v.mp4")]
        assert main(full + ["--quiet"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, (argv, err)
    assert not (tmp_path / "v.mp4").exists()


def test_mp4_frames_are_streamed_not_held(tmp_path):
    import tracemalloc

    def frames():  # 120 frames of 256x256: 23.6 MB if they were all kept
        for i in range(120):
            yield np.full((256, 256, 3), i % 256, np.uint8)

    tracemalloc.start()
    write_video(tmp_path / "long.mp4", frames(), VideoConfig(frames=120), progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 256 * 256 * 3, peak  # a few frames at most
    assert read_video(tmp_path / "long.mp4") == (120, (256, 256))
