"""Hooks a caller (the web demo, a test) passes to a long job (``nada.adapt.train``,
``nada.mapper.train_mapper``) to watch it and to stop it cleanly, without touching signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class RunHooks:
    """Callbacks and a stop flag for one run; every field is optional."""

    on_step: Callable[[dict[str, Any]], None] | None = None   # after each step: its metrics record
                                                              # plus "iters" (the run's total)
    on_sample: Callable[[Path], None] | None = None            # after a sample grid PNG is written
    stop: threading.Event | None = None                        # set: finish this step, save a
                                                              # resumable checkpoint, return interrupted

    def step(self, record: dict[str, Any], total: int) -> None:
        if self.on_step is not None:
            self.on_step({**record, "iters": total})

    def sample(self, path: Path) -> None:
        if self.on_sample is not None:
            self.on_sample(path)

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


class CtrlC:
    """Ctrl-C as a clean stop for a training loop (``install()`` before it, ``restore()`` in its
    ``finally``): the first sets ``requested`` (the loop finishes its step, saves a resumable
    checkpoint and returns), a second raises KeyboardInterrupt. Installed only from the main
    thread (the only one Python delivers signals to); ``restore`` puts the previous handler back."""

    def __init__(self, message: str):
        self.message = message          # logged at the first Ctrl-C: what the loop does now
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning(self.message)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
