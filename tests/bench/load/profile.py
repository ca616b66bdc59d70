"""py-spy on the bot during a step's window: where its CPU goes, as text.

``py-spy record --format raw`` writes one collapsed stack per line
(``frame;frame;...;leaf count``, the first frame naming the thread with
``--threads``). :func:`summarize` turns that into the top functions by own
time (the leaf) and by inclusive time, and the share of each thread, which is
what the load benchmark prints under a profiled step.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["Profiler", "summarize", "thread_names"]

_THREAD = re.compile(r"thread \(")
_LINE = re.compile(r"^(.*) (\d+)$")


def _py_spy() -> str:
    """py-spy next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy (into the venv that runs the bench)")
    return found


_DUMP_THREAD = re.compile(r'^Thread (\d+) \([^)]*\): "(.*)"', re.MULTILINE)


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from ``py-spy dump`` ({} without py-spy)."""
    try:
        dump = subprocess.run([_py_spy(), "dump", "--pid", str(pid), "--nonblocking"], capture_output=True,
                              text=True, timeout=60).stdout
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return {}
    return {int(tid): name for tid, name in _DUMP_THREAD.findall(dump)}


class Profiler:
    """``py-spy record`` attached to ``pid`` for ``seconds``, raw output to ``path``."""

    def __init__(self, pid: int, seconds: float, path: Path, *, gil_only: bool = False) -> None:
        self.path = path
        self._sampled = "only threads holding the GIL" if gil_only else "all threads, not idle"
        command = [_py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                   "--format", "raw", "--threads", "--nonblocking", "--rate", "200", "--output", str(path)]
        if gil_only:
            command.append("--gil")
        self._log = open(path.with_suffix(".log"), "wb")  # noqa: SIM115 - closed in finish()
        self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def finish(self, top: int = 15) -> str:
        """Wait for py-spy and return the summary (or why there is none)."""
        try:
            self._proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        if not self.path.exists():
            return f"py-spy wrote nothing (exit {self._proc.returncode}); see {self.path.with_suffix('.log')}"
        return summarize(self.path.read_text(encoding="utf-8", errors="replace"), top, sampled=self._sampled)


def _frame_name(frame: str) -> str:
    """``fn (path/to/mod.py:123)`` -> ``fn (mod.py:123)``: short, still findable."""
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    return f"{name} ({where.rstrip(')').rsplit('/', 1)[-1]})"


def summarize(raw: str, top: int = 15, *, sampled: str = "all threads, not idle") -> str:
    """Per-thread share, then the ``top`` functions by own and by inclusive samples;
    ``sampled`` says which samples py-spy took."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        found = _LINE.match(line.strip())
        if found is None:
            continue
        stack, count = found.group(1).split(";"), int(found.group(2))
        total += count
        if stack and _THREAD.match(stack[0]):
            threads[stack[0]] += count
            stack = stack[1:]
        frames = [_frame_name(f) for f in stack]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "py-spy: no samples"
    lines = [f"py-spy: {total} samples ({sampled})"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common(8)]
    lines.append("  own time:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive time:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)
