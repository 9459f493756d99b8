"""A web demo served in-process on 127.0.0.1 (a free port) for the API and browser tests."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(runs_dir: Path):
    """Yield (url, ctx) of a running demo over ``runs_dir``; closed afterwards."""
    from nada.app import AppContext, launch

    ctx = AppContext(runs_dir, device="cpu")
    port = free_port()
    demo = launch(ctx, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", ctx
    finally:
        demo.close()
        ctx.close()


# Train-tab API arguments that have no default in the page (file inputs).
NO_FILES = dict(upload=None, style_images=None)
