"""nada's web demo: ``python app.py [--host 127.0.0.1] [--port 7860] [--runs DIR]`` is
``nada app``; the UI lives in the ``nada.app`` package."""

import sys

from nada.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
