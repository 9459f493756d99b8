"""Where nada writes: check that an output path can be written before any work starts, and
hold a run directory for one process at a time."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Raise one ConfigError when nothing can be created at ``path`` (a folder or a file to be,
    or an existing file to replace): a parent that is a regular file, a missing or read-only
    place, a pseudo file system. Probes the nearest existing folder with a temporary directory
    it removes again; creates nothing."""
    p = Path(path).expanduser()
    anc = p if p.is_dir() else p.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"cannot write {what} {p}: {anc} is a file, not a folder", "choose another path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nada-probe-", dir=anc))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot write {what} {p}: {reason} in {anc}", "choose a writable place") from None
    return p


class RunLock:
    """An exclusive lock on a run directory, held while one process trains into it. The lock is
    ``flock`` on ``.<name>.lock`` beside the directory (it survives ``--overwrite`` emptying the
    directory), so the kernel releases it when the process ends, even by SIGKILL."""

    def __init__(self, run_dir: str | os.PathLike):
        d = Path(run_dir)
        self.path = d.parent / f".{d.name}.lock"
        self.run_dir = d
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                holder = self.path.read_text().strip() or "?"
                raise ConfigError(f"run directory {self.run_dir} is in use by another nada process (pid {holder})",
                                  "wait for it to finish, or choose another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
