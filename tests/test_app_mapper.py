"""The web demo's Mapper tab through its HTTP API (gradio_client) against a server in this
process: a short mapper run streams progress and previews, hands over a mapper file that
nada.mapper loads, and is listed and applied at another strength; bad input is one line on the
page and writes nothing."""

from __future__ import annotations

import html
import os
import re

import pytest

from app_server import serve

pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

STEP = re.compile(r"iteration (\d+) / (\d+)")
FORM = dict(gen="shapes", n_steps=10, preview_every=5, init_name="", lv=["coarse", "medium", "fine"], lr_v=0.5,
            batch_v=4, seed_v=0, lc=1.0, ll=0.8, ln=0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with serve(runs) as (url, ctx):
        yield url, ctx, runs


def test_mapper_tab_trains_lists_and_applies(server):
    from nada.mapper import load_mapper

    url, ctx, runs = server
    c = Client(url, verbose=False)
    job = c.submit(**FORM, text="blue", api_name="/mapper_train")
    steps, previews = [], 0
    for out in job:
        m = STEP.search(out[0] or "")
        if m and "Done" not in out[0]:
            steps.append(int(m.group(1)))
        if isinstance(out[1], str) and os.path.isfile(out[1]):
            previews += 1
    final = job.outputs()[-1]
    assert "Done: iteration 10 / 10" in final[0], final[0]
    assert steps == sorted(steps) and len(set(steps)) >= 3 and previews >= 1
    assert "edit target" in final[2] and "blue (colour)" in final[2]  # the oracle's table
    dl = final[3]["value"] if isinstance(final[3], dict) else final[3]
    assert dl.endswith("_mapper.safetensors")
    loaded = load_mapper(dl)
    assert loaded.metadata["target"] == "blue" and loaded.metadata["steps"] == 10
    name = os.path.basename(dl).removesuffix("_mapper.safetensors")
    assert (runs / name / "mapper.safetensors").is_file()
    # listed for applying (and not as a `nada train` run in Explore), then applied at strength 0.3
    gens, inits, mappers, on_gen = c.predict(current_gen="shapes", current_mapper=None, api_name="/mapper_lists")
    assert mappers["value"] == name and name in [v for _, v in inits["choices"]]
    assert name not in [v for _, v in gens["choices"]]
    explore, _ = c.predict(current=[], current_mix=[], api_name="/runs")
    assert name not in [v for _, v in explore["choices"]]
    note, grid, caption = c.predict(name=name, gen="", seed_text="0-3", s=0.3, api_name="/mapper_apply")
    assert note == "" and os.path.isfile(grid) and "strength 0.30" in caption and "blue" in caption
    from PIL import Image

    with Image.open(grid) as im:  # two rows of four 64 px tiles, scaled up 2x for display
        assert im.size == (2 * (4 * 64 + 3 * 2), 2 * (2 * 64 + 2))


@pytest.mark.parametrize("text, words", [("", "the edit text is empty"),
                                         ("with glasses", "does not know the word 'glasses'")])
def test_mapper_tab_bad_input_is_one_line(server, text, words):
    url, ctx, runs = server
    before = sorted(p.name for p in runs.iterdir())
    c = Client(url, verbose=False)
    out = c.predict(**FORM, text=text, api_name="/mapper_train")
    shown = html.unescape(out[0])  # the page's HTML escapes quotes
    assert words in shown and "Traceback" not in shown
    assert sorted(p.name for p in runs.iterdir()) == before  # nothing half-written
    note, grid, caption = c.predict(name="../../etc", gen="", seed_text="0-3", s=0.1, api_name="/mapper_apply")
    assert "no run named" in note and grid is None
