"""The web demo's Edit tab through its HTTP API (gradio_client) against a server in this process:
an uploaded render is inverted and shown through two runs, its latents download, a morph video
decodes; bad input is one line on the page."""

from __future__ import annotations

import html

import pytest
from app_server import serve
from PIL import Image
from test_edit import make_run

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    make_run(runs, "sketch-run", "sketch", 0.05, seed=1)
    make_run(runs, "pixel-run", "pixel art", 0.1, seed=2)
    with serve(runs) as (url, ctx):
        yield url, ctx, runs


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from nada.shapes import renderer as R

    p = tmp_path_factory.mktemp("img") / "heart.png"
    Image.fromarray(R.render(R.Factors("heart", 40.0, 30.0, 33.0, 16.0), 0)).save(p)
    return p


def test_edit_tab_inverts_shows_downloads_and_makes_a_video(server, photo):
    from nada.invert.edit import load_inversion
    from nada.video import read_video

    url, ctx, _ = server
    c = Client(url, verbose=False)
    listed = c.predict(current=[], api_name="/edit_runs")
    names = {v for _, v in listed["choices"]}
    assert names == {"sketch-run", "pixel-run"}
    job = c.submit(img=handle_file(str(photo)), names=["sketch-run", "pixel-run"], n_steps=20, wp=False,
                   api_name="/edit")
    outs = list(job)
    final = job.outputs()[-1]
    assert "Done: iteration 20 / 20" in final[0], final[0]
    assert any("iteration" in (o[0] or "") and "Done" not in o[0] for o in outs)  # progress streamed
    with Image.open(final[1]) as im:  # labels + one row: input, reconstruction, 2 runs at 128 px
        assert im.size == (4 * 128 + 3 * 2, 18 + 128)
    assert "PSNR" in final[2] and "sketch-run" in final[2]
    dl = final[3]["value"] if isinstance(final[3], dict) else final[3]
    ws, noise = load_inversion(dl, 10, 128)
    assert ws.shape == (1, 10, 128) and noise
    from safetensors import safe_open

    with safe_open(dl, "pt") as f:
        assert f.metadata()["generator"] == "shapes"  # the spec, not a server path
    status, video = c.predict(n_frames=12, n_fps=12, lp=True, api_name="/edit_video")
    path = video["video"] if isinstance(video, dict) else video
    assert "12 frames" in html.unescape(status)
    n, size = read_video(path)
    assert n == 12 and size == (128, 128)  # one 128 px cell (a multiple of the 16 px blocks)
    assert str(ctx.runs_dir) not in html.unescape(final[0] + final[2] + status)  # no server paths shown


def test_edit_tab_bad_input_is_one_line(server, photo, tmp_path):
    url, ctx, runs = server
    before = sorted(p.name for p in runs.iterdir())
    c = Client(url, verbose=False)
    text = tmp_path / "x.png"
    text.write_text("no image")
    cases = [
        ({"img": None, "names": ["sketch-run"]}, "no image uploaded"),
        ({"img": handle_file(str(photo)), "names": []}, "no run chosen"),
    ]
    for kw, words in cases:
        out = c.predict(**kw, n_steps=10, wp=False, api_name="/edit")
        shown = html.unescape(out[0])
        assert words in shown and "Traceback" not in shown, (kw, shown)
    from nada.app.edit_tab import EditForm, submit_edit
    from nada.errors import ConfigError, DataError

    # the page offers only listed runs and Gradio decodes uploads itself; the library checks again
    with pytest.raises(ConfigError, match="no run named"):
        submit_edit(ctx, EditForm(image=str(photo), runs=("../../etc",)))
    with pytest.raises(DataError, match="not an image"):
        submit_edit(ctx, EditForm(image=str(text), runs=("sketch-run",)))
    status, video = Client(url, verbose=False).predict(n_frames=12, n_fps=12, lp=True, api_name="/edit_video")
    assert "nothing inverted yet" in html.unescape(status) and (video is None or video.get("__type__") == "update")
    assert sorted(p.name for p in runs.iterdir()) == before


def test_edit_tab_in_a_browser(server, photo, tmp_path):
    """Upload, tick two runs, invert: the collage appears; Make video: the video element gets a source."""
    import os
    import shutil
    from pathlib import Path

    from test_app_browser import ARGS, CHROMIUM

    if not shutil.which(CHROMIUM) and not os.path.isfile(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _, _ = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("tab", name="Edit").click()
            page.locator("#nada-e-image input[type=file]").set_input_files(str(photo))
            page.locator("#nada-e-image img").wait_for()
            for name in ("sketch-run", "pixel-run"):
                box = page.locator("#nada-e-runs label").filter(has_text=name).locator("input")
                if not box.is_checked():
                    box.check()
            steps = page.locator("#nada-e-steps input[type=number]")
            steps.fill("20")
            steps.press("Enter")
            page.locator("#nada-e-go").click()
            page.wait_for_function("document.querySelector('#nada-e-status').innerText.includes('Done:')")
            page.locator("#nada-e-collage img").wait_for()
            assert "PSNR" in page.locator("#nada-e-caption").inner_text()
            page.screenshot(path=str(Path(os.environ.get("NADA_SCREENSHOTS", tmp_path)) / "app-edit.png"))
            page.locator("#nada-e-make").click()
            page.locator("#nada-e-video video").wait_for()
            assert "frames" in page.locator("#nada-e-vstatus").inner_text()
        finally:
            browser.close()


def test_edit_stop_ends_the_inversion(server, photo):
    import time

    url, ctx, _ = server
    c = Client(url, verbose=False)
    job = c.submit(img=handle_file(str(photo)), names=["sketch-run"], n_steps=1000, wp=False, api_name="/edit")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the inversion is under way
        running = ctx.jobs.current()
        if running is not None and running.snapshot().step > 0:
            break
        time.sleep(0.2)
    c.predict(api_name="/edit_stop")
    for _ in job:
        pass
    final = job.outputs()[-1]
    assert "Stopped at iteration" in final[0] and "resumable" not in final[0], final[0]
    step = int(final[0].split("Stopped at iteration ")[1].split(" ")[0])
    assert step < 1000
    # nothing of this visitor runs now: Stop says so in one line
    assert "nothing of yours is running" in c.predict(api_name="/edit_stop")
