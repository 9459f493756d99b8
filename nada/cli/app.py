"""``nada app``: the web demo (Train and Explore tabs) on http://127.0.0.1:7860."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="the web demo: train and compare adapted generators in a browser",
        description="Serve the Gradio web demo. Train adapts a generator (the embedded shapes world, a known "
                    "checkpoint or an uploaded one) with live progress and previews; Explore compares the runs "
                    "of the runs folder. Bound to 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="runs folder: Explore lists it, Train writes new runs into it (default: runs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..app import AppContext, launch
    from ..device import resolve_device

    resolve_device(args.device)  # a bad --device fails here, in one line
    ctx = AppContext(args.runs, device=args.device)
    try:
        launch(ctx, host=args.host, port=args.port, share=args.share)
    finally:
        ctx.close()
    return 0
