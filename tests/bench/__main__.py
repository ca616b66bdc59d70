"""Run the benchmarks: ``python -m tests.bench [name ...]``.

Without names, every ``*_bench.py`` module in this folder runs in turn; a name
may be given with or without the ``_bench`` suffix (``sink`` or ``sink_bench``).
"""

from __future__ import annotations

import pathlib
import runpy
import sys

_HERE = pathlib.Path(__file__).parent


def _available() -> list[str]:
    return sorted(p.stem for p in _HERE.glob("*_bench.py"))


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all when none is named); return the exit status."""
    available = _available()
    wanted = [n if n.endswith("_bench") else f"{n}_bench" for n in argv] or available
    unknown = [n for n in wanted if n not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}",
              file=sys.stderr)
        return 2
    for name in wanted:
        print(f"== {name} ==", flush=True)
        saved, sys.argv = sys.argv, [name]  # each bench runs with its own defaults
        try:
            runpy.run_module(f"{__package__}.{name}", run_name="__main__")
        finally:
            sys.argv = saved
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
