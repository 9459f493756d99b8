"""nada.hub: downloads from a local HTTP server (checksum, atomic move, errors) and specs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading

import pytest

from nada import hub
from nada.errors import CheckpointError, DownloadError


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_verifies_and_moves_atomically(server, tmp_path, monkeypatch):
    root, base = server
    payload = os.urandom(3 * (1 << 20) + 123)
    (root / "net.pkl").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setenv("NADA_CACHE", str(tmp_path / "cache"))
    path = hub.download(f"{base}/net.pkl", sha256=digest, progress=False)
    assert path == tmp_path / "cache" / "weights" / "net.pkl"
    assert path.read_bytes() == payload
    assert os.listdir(path.parent) == ["net.pkl"]
    # cached file with a matching checksum is reused (server copy removed to prove it)
    (root / "net.pkl").unlink()
    assert hub.download(f"{base}/net.pkl", sha256=digest, progress=False) == path


def test_bad_checksum_leaves_nothing(server, tmp_path):
    root, base = server
    (root / "net.pkl").write_bytes(b"x" * 1000)
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        hub.download(f"{base}/net.pkl", dest=dest / "net.pkl", sha256="0" * 64, progress=False)
    assert not (dest / "net.pkl").exists() and os.listdir(dest) == []


def test_known_name_uses_its_url_and_checksum(server, tmp_path, monkeypatch):
    root, base = server
    (root / "ffhq.pkl").write_bytes(b"weights")
    fake = hub.KnownCheckpoint("test-ffhq", f"{base}/ffhq.pkl", "t.pkl", 1024, "nvidia",
                               sha256=hashlib.sha256(b"other").hexdigest())
    monkeypatch.setitem(hub.KNOWN, "test-ffhq", fake)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        hub.download("test-ffhq", dest=tmp_path, progress=False)
    monkeypatch.setitem(hub.KNOWN, "test-ffhq", hub.KnownCheckpoint(
        "test-ffhq", f"{base}/ffhq.pkl", "t.pkl", 1024, "nvidia", sha256=hashlib.sha256(b"weights").hexdigest()))
    assert hub.download("test-ffhq", dest=tmp_path, progress=False).read_bytes() == b"weights"


def test_download_errors(server, tmp_path):
    _, base = server
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="cannot download"):
        hub.download(f"{base}/missing.pkl", dest=dest / "m.pkl", progress=False)
    with pytest.raises(DownloadError, match="unknown checkpoint"):
        hub.download("ffhq-9999", dest=dest)
    assert os.listdir(dest) == []


def test_known_table_is_well_formed():
    for name, c in hub.KNOWN.items():
        assert name == c.name and c.url.startswith("http") and c.resolution in (256, 512, 1024)
        assert c.format in ("nvidia", "tensorflow") and (c.sha256 is None or len(c.sha256) == 64)
    assert "ffhq-1024" in hub.KNOWN and any(n.startswith("afhq") for n in hub.KNOWN)


def test_resolve_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("NADA_PRETRAINED", str(tmp_path / "pre"))
    with pytest.raises(CheckpointError, match="shapes generator .* is missing"):
        hub.resolve_generator(None)
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / hub.SHAPES_GENERATOR).write_bytes(b"x")
    assert hub.resolve_generator("shapes") == tmp_path / "pre" / hub.SHAPES_GENERATOR
    f = tmp_path / "g.pt"
    f.write_bytes(b"x")
    assert hub.resolve_generator(str(f)) == f
    with pytest.raises(CheckpointError, match="not a file, a known name or a URL"):
        hub.resolve_generator(str(tmp_path / "nope.pt"))


# --- a flaky server on 127.0.0.1 -------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture()
def flaky():
    """A server whose behaviour per path is set by the test: ok (Range supported), 500, close
    mid-transfer, short body, stall, redirect loop."""
    import time

    state = {"mode": "ok", "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            mode = state["mode"]
            state["requests"].append((mode, self.headers.get("Range")))
            if mode == "500":
                self.send_error(500, "boom")
                return
            if mode == "loop":
                self.send_response(302)
                self.send_header("Location", self.path)
                self.end_headers()
                return
            start = 0
            rng = self.headers.get("Range")
            if rng and mode == "ok":
                start = int(rng.split("=")[1].rstrip("-"))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode in ("close", "short"):
                self.wfile.write(body[: len(body) // 3])
                self.wfile.flush()
                if mode == "close":
                    self.connection.shutdown(2)
                return
            if mode == "stall":
                self.wfile.write(body[:1000])
                self.wfile.flush()
                time.sleep(3)
                return
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/net.pkl"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("mode, message", [("500", "HTTP 500"), ("loop", "redirect"), ("close", "stopped after"),
                                           ("short", "stopped after"), ("stall", "stopped after")])
def test_each_fault_is_one_line_and_leaves_only_a_resumable_part(flaky, tmp_path, mode, message):
    state, url = flaky
    state["mode"] = mode
    dest = tmp_path / "cache" / "net.pkl"
    with pytest.raises(DownloadError, match=message) as err:
        hub.download(url, dest=dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False, timeout=1.0)
    assert "\n" not in str(err.value)
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir()] in ([], [".net.pkl.part"])
    # the same call against a healthy server resumes (Range) and verifies the whole file
    state["mode"], state["requests"] = "ok", []
    got = hub.download(url, dest=dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert got.read_bytes() == PAYLOAD and os.listdir(dest.parent) == ["net.pkl"]
    if mode in ("close", "short", "stall"):
        assert state["requests"][0][1] is not None and state["requests"][0][1].startswith("bytes="), state


def test_unpublished_hash_is_pinned_at_first_download_and_checked_later(flaky, tmp_path):
    state, url = flaky
    cache = tmp_path / "cache"
    cache.mkdir()
    path = hub.download(url, dest=cache, progress=False)  # no published sha256
    pins = __import__("json").loads((cache / hub.PINS).read_text())
    assert pins == {"net.pkl": hashlib.sha256(PAYLOAD).hexdigest()}
    path.write_bytes(b"tampered")  # a later use notices and fetches it again
    assert hub.download(url, dest=cache, progress=False).read_bytes() == PAYLOAD
    state["mode"] = "short"
    path.unlink()
    with pytest.raises(DownloadError, match="stopped after"):
        hub.download(url, dest=cache, progress=False, timeout=1.0)
