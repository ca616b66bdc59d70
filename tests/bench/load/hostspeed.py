"""How fast this machine runs a fixed piece of Python now, against a reading taken at the start.

The benchmark machines are shared: the same pure-Python loop takes 8.4 ms of
CPU in one minute and 10-15 ms in the next, with the machine otherwise idle
and no steal time reported. A step measured in a slow minute can fail where
the same code passed in a fast one, so every row says how fast the machine
was while it was measured. The loop runs in a child process, about 9 ms every
half second (under 2 % of one CPU), and is timed by the child's own CPU time,
so waiting for a CPU behind the bot does not count, only running slower.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

__all__ = ["HostSpeed", "calibrate"]

_SAMPLE_EVERY = 0.5
# One line per sample: the milliseconds of CPU one fixed loop took. It ends by
# itself once orphaned, so a step that fails before stop() leaves nothing behind.
_CHILD = f"""
import os, time

def loop():
    began = time.thread_time_ns()
    total = 0
    for i in range(200_000):
        total += i * i
    return (time.thread_time_ns() - began) / 1e6

parent = os.getppid()
while os.getppid() == parent:
    print(loop(), flush=True)
    time.sleep({_SAMPLE_EVERY})
"""


class HostSpeed:
    """Times the fixed loop in a child process from construction until :meth:`stop`."""

    def __init__(self) -> None:
        self._child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)

    def stop(self) -> list[float]:
        """End the child; the milliseconds each run of the loop took."""
        self._child.terminate()
        output, _ = self._child.communicate()
        return [float(line) for line in output.split()]

    def median(self) -> float | None:
        """End the child; the median milliseconds the loop took, None without a sample."""
        samples = self.stop()
        return statistics.median(samples) if samples else None


def calibrate(seconds: float = 3.0) -> float | None:
    """The loop's fastest milliseconds over ``seconds``, taken before any load runs.

    The fastest, not the median: a start in a slow minute would otherwise make
    every later step look fast.
    """
    speed = HostSpeed()
    time.sleep(seconds)
    return min(speed.stop(), default=None)
