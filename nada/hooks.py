"""Hooks a caller (the web demo, a test) passes to a long job (``nada.adapt.train``,
``nada.mapper.train_mapper``) to watch it and to stop it cleanly, without touching signals."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
