"""Run ``python -m bot`` in a process that already holds more than 1024 descriptors.

As in a container whose soft RLIMIT_NOFILE is high and whose bot serves many
downloads: every socket the bot opens after this, its voice UDP socket
included, gets a descriptor number of 1024 (FD_SETSIZE) or more.
``python launchers/many_fds.py ARGS...`` is ``python -m bot ARGS...`` otherwise.
"""

from __future__ import annotations

import os
import resource
import runpy
import sys

#: Descriptors held open before the bot starts: past FD_SETSIZE with room to spare.
HELD = 1100


def hold_descriptors(count: int) -> list[int]:
    """Raise the soft descriptor limit as far as needed and open `count` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard),
                                                    hard))
    return [os.open(os.devnull, os.O_RDONLY) for _ in range(count)]


if __name__ == "__main__":
    held = hold_descriptors(HELD)
    sys.argv = ["bot", *sys.argv[1:]]
    runpy.run_module("bot", run_name="__main__", alter_sys=True)
