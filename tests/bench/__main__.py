"""Run the benchmarks: ``python -m tests.bench [name ...]`` or ``python -m tests.bench name --option ...``.

Without names, every ``*_bench.py`` module in this folder runs in turn; a name
may be given with or without the ``_bench`` suffix (``sink`` or ``sink_bench``).
Arguments from the first one starting with ``-`` on go to the one named benchmark.
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
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option], argv[first_option:]
    if options and len(names) != 1:
        print("options need exactly one benchmark name before them", file=sys.stderr)
        return 2
    wanted = [n if n.endswith("_bench") else f"{n}_bench" for n in names] or available
    unknown = [n for n in wanted if n not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}",
              file=sys.stderr)
        return 2
    for name in wanted:
        print(f"== {name} ==", flush=True)
        saved, sys.argv = sys.argv, [name, *options]  # without options a bench runs with its defaults
        try:
            runpy.run_module(f"{__package__}.{name}", run_name="__main__")
        finally:
            sys.argv = saved
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
