"""The CPU runtime: how many threads to use, how they wait, and how memory is recycled.

Measured on a 2-core machine (docs/speed.md): with another busy process on the same cores,
OpenMP's spin-waiting threads fight it for the cores at every one of the hundreds of parallel
regions in a step and a NADA step took 4-7x its quiet time; sleeping waits (``PASSIVE``) or one
thread stay near 2x. Quiet, spinning is faster (sleeping costs 1.9x). So the thread count and
the wait policy follow the cores that are actually free: measured before torch starts (the
policy can only be set then) and, for the thread count, again while a run goes on. A quiet
start spins for a bounded time (:data:`SPIN_COUNT`, about 3 ms) and then sleeps, never
``ACTIVE``'s minutes: a thread the governor stops using then sleeps instead of spinning beside
a job that starts mid-run (README command, load from 15 s on: 99.9 s with ``ACTIVE``, 56.2 s
bounded; quiet the same 35 s).

glibc returns freed blocks above its mmap threshold to the kernel at once, and every new
activation tensor then costs fresh page faults (about 10 % of a shapes-world step, and a 67 MB
map took 68 ms to scale at 256²); serving every block from the heap, never trimmed, keeps them
for reuse. The process's memory then stays at its peak until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h) and the largest mmap threshold glibc accepts (32 MiB on 64-bit).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

# A core counts as taken by others when they use more than this share of it.
BUSY_SHARE = 0.5
# Re-measure the free cores during a run this often (seconds) when the thread count is automatic.
RECHECK_S = 3.0
# libgomp's spins before an idle thread sleeps, set for a quiet start (GOMP_SPINCOUNT; its own
# default when no policy is given, about 3 ms). OMP_WAIT_POLICY=ACTIVE would spin for minutes.
SPIN_COUNT = 300_000
SPIN_THEN_SLEEP = "spin-then-sleep"


@dataclass
class CpuPlan:
    """What :func:`configure` chose, for ``nada info`` and the run's log."""

    threads: int                 # torch intra-op threads
    usable: int                  # cores this process may run on (affinity)
    free: float | None           # cores measured free of other processes (None: not measured)
    wait_policy: str             # OpenMP waits: 'spin-then-sleep' (quiet), 'passive' (sleep), 'active' (spin)
    automatic: bool              # the thread count follows the free cores during runs
    reason: str                  # one line: why these values
    allocator: str = "default"   # 'glibc, heap only, no trimming' when tuned

    def describe(self) -> str:
        free = "not measured" if self.free is None else f"{self.free:.1f} free"
        return (f"{self.threads} of {self.usable} usable cores ({free}); OpenMP wait {self.wait_policy}; "
                f"{'automatic' if self.automatic else 'fixed'}: {self.reason}")


_plan: CpuPlan | None = None
_monitor: "FreeCoreMonitor | None" = None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_busy_seconds() -> float | None:
    """Busy CPU time of the whole machine (all cores) in seconds, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class FreeCoreMonitor:
    """Cores left free by *other* processes over the time since the last reading: the machine's
    busy time minus this process's own, so a running job does not count itself."""

    def __init__(self):
        self.usable = usable_cores()
        self._last = self._read()

    @staticmethod
    def _read():
        busy = _cpu_busy_seconds()
        return None if busy is None else (time.monotonic(), busy, _own_seconds())

    def free(self) -> float | None:
        """Free cores since the previous call (None where /proc/stat is missing or no time passed)."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] - last[0] <= 0:
            return None
        wall = now[0] - last[0]
        others = max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / wall
        others = min(others, os.cpu_count() or self.usable)
        return max(0.0, self.usable - others)


def measure_free_cores(seconds: float = 0.3) -> float | None:
    """Cores free of other processes, sampled over ``seconds``."""
    mon = FreeCoreMonitor()
    time.sleep(seconds)
    return mon.free()


def _busy(free: float | None, usable: int) -> bool:
    """Other processes use more than :data:`BUSY_SHARE` of a core."""
    return free is not None and free < usable - BUSY_SHARE


def threads_for(free: float | None, usable: int) -> int:
    """Threads for ``free`` cores: every free core, and at least one."""
    if free is None:
        return usable
    return max(1, min(usable, int(free + (1 - BUSY_SHARE))))


def tune_allocator() -> bool:
    """Keep freed tensor memory in the heap for reuse (glibc only; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    # Blocks above the largest threshold glibc accepts (32 MiB: a 256² feature map of batch 2)
    # would still be mmap'd and faulted in afresh each time: serve every block from the heap.
    return ok and bool(mallopt(_M_MMAP_MAX, 0))


def configure(threads: int | None = None, measure_s: float = 0.3) -> CpuPlan:
    """Choose and apply the CPU runtime for this process (the ``nada`` command calls it first).

    ``threads``: a fixed count, or None to follow the free cores. Before torch is imported this
    also picks OpenMP's waits (spin about 3 ms, then sleep, when the cores are free; sleep at
    once when others use them),
    unless ``OMP_WAIT_POLICY`` / ``OMP_NUM_THREADS`` / ``GOMP_SPINCOUNT`` are set, which are
    respected as given."""
    global _plan, _monitor
    usable = usable_cores()
    allocator = "glibc, heap only, no trimming" if tune_allocator() else "default"
    torch_loaded = "torch" in sys.modules
    env_threads = os.environ.get("OMP_NUM_THREADS")
    free = None
    if threads is not None:
        if threads < 1:
            from .errors import ConfigError

            raise ConfigError(f"--threads {threads} is not a thread count", "pass 1 or more, or leave it out (automatic)")
        n, automatic, reason = threads, False, "--threads"
    elif env_threads and env_threads.isdigit() and int(env_threads) > 0:
        n, automatic, reason = int(env_threads), False, "OMP_NUM_THREADS"
    else:
        free = measure_free_cores(measure_s)
        n, automatic = usable, True
        reason = "every core is free" if not _busy(free, usable) else "other processes use the cores"
    policy = os.environ.get("OMP_WAIT_POLICY", "").lower()
    if not policy:
        if torch_loaded or not _busy(free, usable):  # libgomp's default (torch loaded) or ours: bounded spins
            policy = SPIN_THEN_SLEEP
            if not torch_loaded:
                os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))
        else:
            policy = "passive"
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if automatic and policy != "passive":
        n = threads_for(free, usable)
    import torch

    torch.set_num_threads(n)
    _plan = CpuPlan(n, usable, free, policy, automatic, reason, allocator)
    _monitor = FreeCoreMonitor() if automatic else None
    log.debug("CPU runtime: %s", _plan.describe())
    return _plan


def plan() -> CpuPlan | None:
    """What :func:`configure` chose in this process (None if it was not called)."""
    return _plan


class ThreadGovernor:
    """Called once per training step: where the thread count is automatic, re-measures the free
    cores every :data:`RECHECK_S` seconds and follows them (another job starting or ending).
    Spinning threads (the quiet start's policy) drop to one thread while others are busy;
    sleeping ones (a busy start's) keep every core, which measured best under load."""

    def __init__(self):
        self._next = time.monotonic() + RECHECK_S

    def tick(self) -> int | None:
        """The new thread count if it changed, else None."""
        if _plan is None or not _plan.automatic or _monitor is None or _plan.wait_policy == "passive":
            return None
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + RECHECK_S
        free = _monitor.free()
        if free is None:
            return None
        # Our own threads count as ours, so `free` is what the others leave us.
        n = threads_for(free, _plan.usable)
        _plan.free = free
        if n == _plan.threads:
            return None
        import torch

        torch.set_num_threads(n)
        log.info("CPU: %s threads now (%.1f cores free of other processes)", n, free)
        _plan.threads = n
        return n
