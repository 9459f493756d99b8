"""The web demo through its HTTP API (gradio_client), against a server in this process: a
20-iteration run streams progress and previews and hands over files nada.checkpoints loads;
Explore answers within 2 s while a run trains; a second visitor sees their place in line; bad
input is one line on the page and writes nothing; nothing outside a run's downloads is served."""

from __future__ import annotations

import html
import os
import pickle
import re
import statistics
import time
import urllib.error
import urllib.request

import pytest
from app_server import NO_FILES, serve

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

ITER = re.compile(r"iteration (\d+) / (\d+)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with serve(runs) as (url, ctx):
        yield url, ctx, runs


def client(url):
    return Client(url, verbose=False)


def run_entries(runs):
    return sorted(p.name for p in runs.iterdir())


def test_train_20_iterations_streams_progress_previews_and_files(server, tmp_path):
    from nada.checkpoints import load_generator

    url, ctx, runs = server
    c = client(url)
    t0 = time.perf_counter()
    job = c.submit(**NO_FILES, target="sketch", iters=20, preview_every=5, evaluate=True, api_name="/train")
    seen, previews = [], 0
    for out in job:
        m = ITER.search(out[0])
        if m and "Done" not in out[0]:
            seen.append(int(m.group(1)))
        if isinstance(out[1], str) and os.path.isfile(out[1]):
            previews += 1
    final = job.outputs()[-1]
    elapsed = time.perf_counter() - t0
    print(f"\n20-iteration run through the API: {elapsed:.1f} s (incl. the 256-seed evaluation)")
    assert "Done: iteration 20 / 20" in final[0]
    assert len(set(seen)) >= 5 and seen == sorted(seen) and max(seen) == 20  # live, in order
    assert previews >= 3  # iterations 5, 10, 15 (and the final grid)
    assert "target attainment" in final[2] and "| shape preserved |" in final[2]
    gen, ros, dom, png = (v["value"] if isinstance(v, dict) else v for v in final[3:7])
    assert gen.endswith("_generator.safetensors") and ros.endswith("_generator_rosinality.pt")
    assert dom is None  # a full run has no domain file to offer
    name = gen.split("/")[-1].removesuffix("_generator.safetensors")
    run = runs / name
    assert (run / "eval.json").is_file()
    with open(gen, "rb") as a, open(run / "generator.safetensors", "rb") as b:
        assert a.read() == b.read()
    G = load_generator(gen).generator
    assert G.img_resolution == 64
    assert load_generator(ros).format == "rosinality"
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[1] > im.size[0] / 8  # two rows of 8 seeds
    # the run shows in Explore's list and renders there
    listed, _ = c.predict(current=[], current_mix=[], api_name="/runs")  # dropdown updates: (label, name) choices
    assert name in [value for _, value in listed["choices"]] and listed["value"] == [name]
    note, grid, caption, evals, dl = c.predict(names=[name], seed_text="0-3", psi=0.7, blend=1.0,
                                               api_name="/explore")
    assert note == "" and "frozen" in caption and "target attainment" in evals
    with Image.open(grid) as im:
        assert im.size[0] > 4 * 64 and im.size[1] > 2 * 64


def test_train_a_domain_and_mix_it(server):
    from nada.domains import read_domain

    url, ctx, runs = server
    c = client(url)
    job = c.submit(**NO_FILES, target="sketch", adapter="stylespace", iters=10, preview_every=5, evaluate=False,
                   api_name="/train")
    final = job.result()
    assert "Done: iteration 10 / 10" in final[0]
    gen, ros, dom, png = (v["value"] if isinstance(v, dict) else v for v in final[3:7])
    assert gen is None and ros is None and dom.endswith("_domain.safetensors")
    assert read_domain(dom).kind == "stylespace" and os.path.getsize(dom) < 16384
    name = dom.split("/")[-1].removesuffix("_domain.safetensors")
    _, mixable = c.predict(current=[], current_mix=[], api_name="/runs")
    assert name in [value for _, value in mixable["choices"]]
    note, grid, caption = c.predict(names=[name], seed_text="0-3", psi=0.7, w0=2.0, w1=1, w2=1, w3=1,
                                    api_name="/mix")
    assert note == "" and "2 × `" in caption and os.path.isfile(grid)


def test_explore_answers_within_2s_while_a_run_trains_and_stop_leaves_it_resumable(server):
    url, ctx, runs = server
    existing = [r.name for r in ctx.list_runs(finished_only=True)]
    if not existing:
        pytest.skip("needs the run of the previous test")
    trainer = client(url)
    job = trainer.submit(**NO_FILES, target="neon", iters=200, preview_every=10, evaluate=False, api_name="/train")
    deadline = time.time() + 120
    while time.time() < deadline:
        outs = job.outputs()
        if outs and (m := ITER.search(outs[-1][0])) and int(m.group(1)) >= 2:
            break
        time.sleep(0.2)
    viewer = client(url)
    times = []
    for i in range(8):
        t = time.perf_counter()
        note, grid, *_ = viewer.predict(names=existing[:1], seed_text=f"{i}-{i + 7}", psi=0.7, blend=0.5,
                                        api_name="/explore")
        times.append(time.perf_counter() - t)
        assert note == "" and grid
    running = ctx.jobs.current()
    assert running is not None and running.snapshot().step < 200  # it really was training meanwhile
    print(f"\nExplore during training: best {min(times):.2f} s, median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)} requests")
    assert statistics.median(times) < 2.0 and min(times) < 2.0
    trainer.predict(api_name="/stop")
    for _ in job:
        pass
    final = job.outputs()[-1][0]
    assert "Stopped at iteration" in final and "resumable" in final
    name = running.tag
    assert (runs / name / "checkpoints" / "resume.pt").is_file() and not (runs / name / "generator.safetensors").exists()
    # Resume continues it (to two more iterations than it had) and finishes it
    step = running.snapshot().step
    res = trainer.submit(run_name=name, total=step + 2, api_name="/resume")
    for _ in res:
        pass
    assert f"Done: iteration {step + 2} / {step + 2}" in res.outputs()[-1][0]
    assert (runs / name / "generator.safetensors").is_file()


def test_a_second_visitor_sees_their_place_in_line(server):
    url, ctx, _ = server
    first, second = client(url), client(url)
    a = first.submit(**NO_FILES, target="sketch", iters=200, evaluate=False, api_name="/train")
    while ctx.jobs.current() is None:
        time.sleep(0.1)
    b = second.submit(**NO_FILES, target="neon", iters=20, evaluate=False, api_name="/train")
    deadline = time.time() + 60
    while time.time() < deadline and not any("In line" in o[0] for o in b.outputs()):
        time.sleep(0.2)
    waiting = next(o[0] for o in b.outputs() if "In line" in o[0])
    assert "1 job ahead of yours" in waiting and "sketch" in waiting
    second.predict(api_name="/stop")  # leaves the line
    for _ in b:
        pass
    assert "Cancelled before it started" in b.outputs()[-1][0]
    assert a.status().code.name != "FINISHED"  # the first visitor's run was not touched
    first.predict(api_name="/stop")
    for _ in a:
        pass
    assert "Stopped at iteration" in a.outputs()[-1][0]


def _evil_files(tmp_path):
    from ckpt_builders import nvidia_pickle_bytes
    from test_checkpoints import nv_kwargs, random_generator, small_cfg

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    G = random_generator(small_cfg(8))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    (tmp_path / "network.pkl").write_bytes(nvidia_pickle_bytes(G.state_dict(), nv_kwargs(G.cfg),
                                                               g_ema_override=Evil()))
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    (tmp_path / "fake.png").write_text("this is not a picture")
    return marker


@pytest.mark.parametrize("case, kwargs, words", [
    ("empty target", dict(target="   "), "the target text is empty"),
    ("unknown CLIP model", dict(target="sketch", clip=["ViT-X-99:openai"]), "unknown CLIP model 'ViT-X-99'"),
    ("CLIP from a server path", dict(target="sketch", clip=["ViT-B-32:/etc/passwd"]), "names a file"),
    ("unknown word", dict(target="banana"), "does not know the word 'banana'"),
    ("malicious pickle", dict(target="sketch", generator="upload", upload="evil.pkl"), "refused"),
    ("malicious G_ema", dict(target="sketch", generator="upload", upload="network.pkl"), "G_ema"),
    ("corrupt upload", dict(target="sketch", generator="upload", upload="corrupt.safetensors"), "corrupt"),
    ("non-image style", dict(guide="images", style_images=["fake.png"]), "'fake.png' cannot be read as an image"),
    ("unknown layer (found by prepare, in the job)", dict(target="sketch", layers="b999.conv0"), "b999.conv0"),
])
def test_bad_input_is_one_line_on_the_page_and_writes_nothing(server, tmp_path, case, kwargs, words):
    url, ctx, runs = server
    marker = _evil_files(tmp_path)
    args = {**NO_FILES, **kwargs}
    if isinstance(args.get("upload"), str):
        args["upload"] = handle_file(str(tmp_path / args["upload"]))
    if args.get("style_images"):
        args["style_images"] = [handle_file(str(tmp_path / f)) for f in args["style_images"]]
    before = run_entries(runs)
    outs = []
    job = client(url).submit(**args, api_name="/train")
    for out in job:
        outs.append(out)
    status = outs[-1][0]
    text = html.unescape(re.sub(r"<[^>]+>", "", status))
    assert "nada-error" in status and words in text, text
    assert "Traceback" not in text and str(tmp_path) not in text and len(text.splitlines()) == 1
    assert run_entries(runs) == before  # no run directory, no stored upload
    assert not marker.exists()


def test_only_a_runs_downloads_are_served(server):
    url, ctx, runs = server
    finished = [r.name for r in ctx.list_runs(finished_only=True)]
    if not finished:
        pytest.skip("needs a finished run")
    run = runs / finished[0]
    c = client(url)
    # Explore refuses run names that are not listed runs (path traversal included)
    for bad in ["../../etc", "..", str(run), f"{finished[0]}/../.."]:
        try:
            note = c.predict(names=[bad], seed_text="0", psi=0.7, blend=1.0, api_name="/explore")[0]
        except Exception as exc:
            pytest.fail(f"a traceback instead of a message: {exc}")
        assert "no run named" in note and "nada-error" in note, note
    # Gradio's file route serves no file of the runs folder, nor anything else on the machine
    for path in [run / "checkpoints" / "resume.pt", run / "generator.safetensors", run / "config.json",
                 "/etc/passwd", f"{run}/../../../../etc/passwd"]:
        for prefix in ("gradio_api/file=", "file="):
            try:
                with urllib.request.urlopen(f"{url}{prefix}{path}") as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status in (403, 404), (prefix, path, status)
