"""What an operator can read about a process from /proc: CPU time, RSS, UDP drops."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["ProcSample", "sample", "thread_cpu", "udp_drops", "rcvbuf_errors"]

_TICKS = os.sysconf("SC_CLK_TCK")
_SOCKET_INODE = re.compile(r"socket:\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process: CPU seconds used so far, resident memory now."""

    cpu_seconds: float
    rss_bytes: int


def sample(pid: int) -> ProcSample:
    """utime+stime from /proc/<pid>/stat and VmRSS from /proc/<pid>/status."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # The command name may hold spaces; fields after its closing ')' are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
                break
    return ProcSample(cpu, rss)


def thread_cpu(pid: int, names: dict[int, str] | None = None) -> dict[str, float]:
    """CPU seconds used so far per thread kind of ``pid`` (/proc/<pid>/task/*/stat).

    Threads are named from ``names`` (native id -> Python thread name, see
    ``profile.thread_names``; CPython 3.11 does not tell the kernel) or else
    the kernel's name, and grouped by the name's first word
    (``AudioSink(rec)#0`` -> ``AudioSink``)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = (names or {}).get(int(tid)) or text[text.index("(") + 1:text.rindex(")")]
        kind = re.split(r"[(:#]", name, maxsplit=1)[0] or name
        fields = text.rsplit(")", 1)[1].split()
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:  # closed meanwhile
            continue
        found = _SOCKET_INODE.match(target)
        if found:
            inodes.add(found.group(1))
    return inodes


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped on ``pid``'s open UDP sockets (the ``drops``
    column of /proc/net/udp: receive buffer full, or bad checksum)."""
    inodes = _socket_inodes(pid)
    total = 0
    with open(f"/proc/{pid}/net/udp", encoding="ascii") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[9] in inodes:
                total += int(cols[12])
    return total


def rcvbuf_errors() -> int:
    """Udp RcvbufErrors of the whole host (/proc/net/snmp): drops on any UDP socket."""
    with open("/proc/net/snmp", encoding="ascii") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])
