"""One job at a time: a FIFO queue and a single worker thread for the long jobs of the web demo.

A job is any callable ``fn(hooks: nada.hooks.RunHooks) -> result``, called as ``fn(hooks=hooks)``
in the worker thread (``nada.adapt.train`` with ``functools.partial(train, cfg)``, the mapper's
trainer the same way). The callable reports through the hooks it is given:

- ``hooks.step(record, total)`` after each step: ``record`` is a dict (``iter`` is the step
  count so far, ``loss`` is shown when present, anything else is kept as is);
- ``hooks.sample(path)`` after it writes a preview image;
- it polls ``hooks.stopping`` and, once it is true, ends cleanly (resumable) and returns.

It returns its result (kept in ``Job.result``) or raises: a :class:`nada.errors.NadaError` becomes
``Job.error`` as its one-line message; any other exception is logged with its traceback and
becomes a one-line "internal error" message. Nothing here knows Gradio: a page watches a job with
``Job.watch()`` (a generator of :class:`JobSnapshot`), a test with ``Job.wait()``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NadaError
from ..hooks import RunHooks

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, STOPPED, FAILED, CANCELLED = "queued", "running", "done", "stopped", "failed", "cancelled"
FINISHED = (DONE, STOPPED, FAILED, CANCELLED)
_RATE_WINDOW = 10  # steps over which it/s is measured
_KEEP = 200        # finished jobs remembered for get()


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent view of a job at one moment (what a page renders)."""

    id: int                          # the job's number
    name: str                        # what it is, for people ("photo → sketch")
    state: str                       # queued | running | done | stopped | failed | cancelled
    ahead: int                       # jobs before it in line (0 once it runs)
    step: int                        # steps done (the last record's "iter", else a count)
    total: int | None                # steps the job will take, when it said
    rate: float | None               # steps per second over the last few steps
    loss: float | None               # the last record's "loss"
    record: dict[str, Any] | None    # the last step record as the job gave it
    sample: Path | None              # the newest preview image
    samples: int                     # how many previews so far
    elapsed: float                   # seconds since it started running (0 while queued)
    error: str | None                # one-line message when failed
    result: Any = None               # the callable's return value once done or stopped
    version: int = 0                 # grows with every change
    stop_requested: bool = False     # Stop pressed, the job has not ended yet
    tag: str | None = None           # the submitter's handle (the Train tab: the run's name)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass
class Job:
    """A submitted callable and everything it reported. Read it through :meth:`snapshot`."""

    id: int
    name: str
    fn: Callable[..., Any]
    runner: "JobRunner"
    owner: str | None = None         # who submitted it (a page session), for Stop
    tag: str | None = None           # free handle for the submitter (e.g. the run name)
    stop_event: threading.Event = field(default_factory=threading.Event)
    state: str = QUEUED
    record: dict[str, Any] | None = None
    steps: int = 0
    total: int | None = None
    samples: list[Path] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    version: int = 0
    _times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=_RATE_WINDOW + 1))

    # -- called from the worker thread (through the hooks) ------------------------------
    def _on_step(self, record: dict[str, Any]) -> None:
        with self.runner._cond:
            self.record = dict(record)
            self.steps = int(record.get("iter", self.steps + 1))
            total = record.get("iters")
            self.total = int(total) if total is not None else self.total
            self._times.append((time.perf_counter(), self.steps))
            self._changed()

    def _on_sample(self, path: Path) -> None:
        with self.runner._cond:
            self.samples.append(Path(path))
            self._changed()

    def _changed(self) -> None:  # caller holds the lock
        self.version += 1
        self.runner._cond.notify_all()

    # -- for pages and tests -----------------------------------------------------------
    def snapshot(self) -> JobSnapshot:
        with self.runner._cond:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> JobSnapshot:
        rate = None
        if len(self._times) >= 2:
            (t0, s0), (t1, s1) = self._times[0], self._times[-1]
            rate = (s1 - s0) / (t1 - t0) if t1 > t0 else None
        end = self.ended if self.ended is not None else time.perf_counter()
        loss = self.record.get("loss") if self.record else None
        return JobSnapshot(
            id=self.id, name=self.name, state=self.state, ahead=self.runner._ahead_locked(self),
            step=self.steps, total=self.total, rate=rate, loss=float(loss) if loss is not None else None,
            record=dict(self.record) if self.record else None, sample=self.samples[-1] if self.samples else None,
            samples=len(self.samples), elapsed=0.0 if self.started is None else end - self.started,
            error=self.error, result=self.result, version=self.version,
            stop_requested=self.stop_event.is_set(), tag=self.tag,
        )

    def stop(self) -> None:
        """Queued: leave the line. Running: ask the callable to stop at its next step."""
        self.runner.stop(self)

    def watch(self, heartbeat: float = 1.0) -> Iterator[JobSnapshot]:
        """Snapshots as the job changes (and at least every ``heartbeat`` s, for the clock and
        the place in line); the last one is finished."""
        seen = -1
        while True:
            with self.runner._cond:
                if self.version == seen and self.state not in FINISHED:
                    self.runner._cond.wait(heartbeat)
                snap = self._snapshot_locked()
            seen = snap.version
            yield snap
            if snap.finished:
                return

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        """Block until the job has finished (or ``timeout`` s passed); its snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.runner._cond:
            while self.state not in FINISHED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.runner._cond.wait(left)
            return self._snapshot_locked()


class JobRunner:
    """A FIFO of jobs run one at a time by one worker thread (one job per device).

    ``submit(fn, name)`` queues ``fn`` (see the module docstring for its contract) and returns
    the :class:`Job`; ``stop(job)`` cancels a queued job or asks a running one to stop;
    ``current()`` is the running job, ``pending()`` the line behind it."""

    def __init__(self, name: str = "nada-jobs"):
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        self._jobs: dict[int, Job] = {}  # recent jobs by id (the last _KEEP)
        self._ids = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], name: str = "job", owner: str | None = None,
               tag: str | None = None) -> Job:
        """Queue ``fn`` (called as ``fn(hooks=RunHooks(...))``); ``name`` is shown to people,
        ``owner`` (a session id) lets :meth:`jobs_of` find it, ``tag`` is the caller's handle."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the job runner is closed")
            job = Job(next(self._ids), name, fn, self, owner=owner, tag=tag)
            self._queue.append(job)
            self._jobs[job.id] = job
            while len(self._jobs) > _KEEP:
                self._jobs.pop(next(iter(self._jobs)))
            self._cond.notify_all()
            return job

    def get(self, job_id: int | None) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id) if job_id is not None else None

    def jobs_of(self, owner: str) -> list[Job]:
        """The unfinished jobs ``owner`` submitted, oldest first."""
        with self._cond:
            return [j for j in self._jobs.values() if j.owner == owner and j.state not in FINISHED]

    def stop(self, job: Job) -> None:
        with self._cond:
            if job.state == QUEUED and job in self._queue:
                self._queue.remove(job)
                job.state = CANCELLED
                job.ended = time.perf_counter()
                job._changed()
                for other in self._queue:  # everyone behind moved up one place
                    other._changed()
            elif job.state == RUNNING:
                job.stop_event.set()
                job._changed()

    def current(self) -> Job | None:
        with self._cond:
            return self._current

    def pending(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def _ahead_locked(self, job: Job) -> int:
        if job.state != QUEUED:
            return 0
        try:
            return self._queue.index(job) + (self._current is not None)
        except ValueError:
            return 0

    def close(self, timeout: float | None = None) -> None:
        """Cancel what waits, stop what runs, and end the worker thread."""
        with self._cond:
            self._closed = True
            for job in list(self._queue):
                self.stop(job)
            if self._current is not None:
                self._current.stop_event.set()
            self._cond.notify_all()
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._current = job
                job.state = RUNNING
                job.started = time.perf_counter()
                job._changed()
                for other in self._queue:  # everyone behind moved up one place
                    other._changed()
            hooks = RunHooks(on_step=job._on_step, on_sample=job._on_sample, stop=job.stop_event)
            state, result, error = DONE, None, None
            try:
                result = job.fn(hooks=hooks)
                if job.stop_event.is_set():
                    state = STOPPED
            except NadaError as exc:
                state, error = FAILED, str(exc)
            except Exception as exc:  # a bug, not bad input: keep the traceback in the server log
                log.exception("job %d (%s) failed", job.id, job.name)
                state, error = FAILED, f"internal error: {type(exc).__name__}: {exc} (the server log has the details)"
            with self._cond:
                job.state, job.result, job.error = state, result, error
                job.ended = time.perf_counter()
                self._current = None
                job._changed()
