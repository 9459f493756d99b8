"""The CLI entry point: version, help, environment report, one-line errors."""

import subprocess
import sys

from nada import __version__
from nada.cli import main


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out


def test_info_reports_environment(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    import torch

    assert torch.__version__ in out
    assert "shapes world" in out and "MISSING" not in out


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "nada", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "shapes world" in proc.stdout
