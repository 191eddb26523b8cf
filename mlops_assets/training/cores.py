"""How many cores a long boosting fit can use: those the rest of the machine leaves free.

scikit-learn's HistGradientBoosting grows each tree a node at a time, and each node is a few
short OpenMP regions whose threads wait for each other at the end. With every core free, two
threads fit 72,000 rows in 3.2 s against 4.1 s on one (720,000 rows: 15 s against 30 s). When
another process wants a core, the thread the scheduler puts aside stalls its partner at every
one of those barriers: beside one busy process, 11.5 s against 4.3 s at 72,000 rows and 62 s
against 36 s at 720,000 (measured on this project's 2-core machines).

So before a long fit the sweep looks at what the rest of the machine used while it raced:
other processes, and time the hypervisor gave to other machines (steal). That is read from
Linux's /proc/stat, less this process's own CPU time. Where there is no /proc/stat, the
threads stay as configured, as scikit-learn's default would have them.
"""

import math
import os
import time
from dataclasses import dataclass

# Shortest window worth reading: /proc/stat counts in ticks of 10 ms.
MIN_WINDOW_SECONDS = 0.5
# A core counts as free when the rest of the machine used at most this much of one over the
# window: the daemon's and webserver's ticks under `mlops-assets dev` stay well below it.
BUSY_SHARE = 0.25


@dataclass(frozen=True)
class _Reading:
    wall: float
    machine_busy: float | None  # CPU seconds all cores spent busy since boot (None: unknown)
    cores: int
    own: float  # this process's CPU seconds, every thread


def _machine() -> tuple[float, int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            lines = stat.read().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].startswith("cpu "):
        return None
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is taken.
    ticks = [int(value) for value in lines[0].split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    cores = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return busy / os.sysconf("SC_CLK_TCK"), cores


def _read() -> _Reading:
    machine = _machine()
    return _Reading(
        wall=time.monotonic(),
        machine_busy=machine[0] if machine else None,
        cores=machine[1] if machine else 0,
        own=time.process_time(),
    )


def free_cores(others: float, cores: int) -> int:
    """Cores a fit can take when the rest of the machine keeps `others` cores busy: at least
    one (the fit's own), and a core more only where the rest left it nearly idle."""
    return max(1, min(cores, math.floor(cores - others + BUSY_SHARE)))


class OtherLoad:
    """What the rest of the machine used since this was made."""

    def __init__(self) -> None:
        self._start = _read()

    def cores_used(self) -> float | None:
        """Cores the rest of the machine kept busy on average, or None where that cannot be
        read. A window shorter than MIN_WINDOW_SECONDS is waited out first."""
        if self._start.machine_busy is None:
            return None
        left = MIN_WINDOW_SECONDS - (time.monotonic() - self._start.wall)
        if left > 0:
            time.sleep(left)
        now = _read()
        if now.machine_busy is None:
            return None
        wall = now.wall - self._start.wall
        busy = now.machine_busy - self._start.machine_busy - (now.own - self._start.own)
        return max(0.0, busy / wall)

    def fit_cores(self) -> int | None:
        """Threads for a long fit now: None (as configured) when nothing got in the way or
        nothing could be read, else the cores left free."""
        others = self.cores_used()
        if others is None:
            return None
        cores = free_cores(others, self._start.cores)
        return None if cores >= self._start.cores else cores
