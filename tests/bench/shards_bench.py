"""One bot process against two shard processes on the same host, in one run (issue #17).

Run: ``python -m tests.bench shards [--quick] [--steps 100,200,...]`` (``--help`` lists the rest).

The full-path load of ``python -m tests.bench load`` (its stage, its measuring
step and its pass rule: zero loss of every kind and worker lag under 200 ms),
DAVE on, against two setups of the same bot on two gateway shards:

- one process running both shards (``SHARD_COUNT=2``);
- two processes, one shard each (``SHARD_COUNT=2`` with ``SHARD_IDS=0``, and
  with ``SHARD_IDS=1``).

The stage's guilds take turns over the two shards by Discord's rule
``(guild_id >> 22) % 2`` and the speakers are spread evenly over the guilds,
so each shard carries half of the N speakers. The setups take turns at each N
(one process, then two), so a slow minute of the shared machine hits both
alike; a setup drops out at its first failing step, and N grows until both
have failed.

Both setups run as a deployment of several processes on one host does: the
index in one PostgreSQL (``DATABASE_URL``; a server of the bench's own from
Debian's package, see :mod:`tests.postgres`, a fresh database per step),
because a guild's settings and recordings must be where every process sees
them once a reshard moves the guild; and a ``RECORDINGS_DIR`` per process,
because a live track is a local file its process appends to. The one-process
setup uses the same PostgreSQL, so the process count is the only difference.

Every step prints the load benchmark's row: bot CPU summed over the processes
(and per process), the load generator's CPU (this process: the loopback
Discord streams from one thread, so 100 % is all it can do; a step where it
is near a core or falls behind its 20 ms slots says so), and the ``host``
speed column. On a 2-core machine the bot processes and the generator share
the two cores: bot CPU + generator CPU near 200 % means the machine, not the
bot's design, ran out. The table at the end gives each setup's largest
passing N and the ratio two/one against the target of 1.6x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.bench.load import hostspeed
from tests.bench.load.stage import rooms_for
from tests.bench.load_bench import (
    HEADER,
    LAG_LIMIT_MS,
    Row,
    chosen_steps,
    drop_recordings,
    format_row,
    largest_passing,
    measure_ours,
    rate_host,
    step_options,
)
from tests.postgres import PostgresServer, running_server

#: Gateway shards of both setups: one process runs them all, or one process runs each.
SHARDS = 2
#: Two processes must carry at least this many times the speakers of one.
TARGET_RATIO = 1.6


@dataclass(frozen=True, eq=False)
class Setup:
    """One way of running the bot: a process per entry of ``processes`` (its own environment)."""

    name: str
    processes: tuple[Mapping[str, str], ...]


SETUPS = (
    Setup(f"1 process, shards 0-{SHARDS - 1}", ({"SHARD_COUNT": str(SHARDS)},)),
    Setup(f"{SHARDS} processes, 1 shard each",
          tuple({"SHARD_COUNT": str(SHARDS), "SHARD_IDS": str(i)} for i in range(SHARDS))),
)


def measure(setup: Setup, speakers: int, *, per_room: int, warmup: float, window: float, workdir: Path,
            server: PostgresServer) -> Row:
    """One step of ``setup`` with ``speakers`` speakers, DAVE on, on a fresh database."""
    database = server.create_database()
    try:
        return measure_ours(
            dave=True, speakers=speakers, rooms=rooms_for(speakers, per_room, SHARDS), warmup=warmup,
            window=window, workdir=workdir, env={"DATABASE_URL": server.url(database)},
            who=f"{setup.name}, DAVE on", shards=SHARDS, processes=setup.processes)
    finally:
        server.drop_database(database)


def _summary(results: dict[Setup, list[Row]]) -> str:
    cores = os.cpu_count() or 1
    lines = [f"largest N with zero loss and worker lag < {LAG_LIMIT_MS:.0f} ms, DAVE on "
             f"(load average now {os.getloadavg()[0]:.2f}); CPU in % of one core; machine: bot + generator "
             f"in % of all {cores} cores:",
             f"  {'setup':<28} {'largest N':>9} {'bot CPU%':>8} {'gen CPU%':>8} {'machine%':>8} {'host':>5}   "
             "first failing step: bot CPU% / gen CPU% / host / why"]
    for setup, rows in results.items():
        best = largest_passing(rows)
        at_best = next((r for r in rows if r.passed and r.speakers == best), None)
        failed = _first_failing(rows)
        cols = (f"{at_best.bot_cpu:>8.0f} {at_best.gen_cpu:>8.0f} {(at_best.bot_cpu + at_best.gen_cpu) / cores:>8.0f} "
                f"{_host(at_best):>5}" if at_best else f"{'-':>8} {'-':>8} {'-':>8} {'-':>5}")
        failing = (f"N={failed.speakers}: {failed.bot_cpu:.0f} / {failed.gen_cpu:.0f} / {_host(failed)} / "
                   f"{_why(failed)}" if failed else "none (raise --steps)")
        lines.append(f"  {setup.name:<28} {best:>9} {cols}   {failing}")
    lines.append("  " + _ratio(*(results[setup] for setup in SETUPS)))
    # Where the verdict is made: the largest passing step (it may have offered less than it
    # should) and the first failing one (the generator may be what failed).
    limited = [f"{setup.name} at N={r.speakers}" for setup, rows in results.items() for r in rows
               if r.generator_limited
               and (r is _first_failing(rows) or (r.passed and r.speakers == largest_passing(rows)))]
    if limited:
        lines.append("  the load generator was near a core, fell behind or offered too little at: "
                     + "; ".join(limited) + ": there it, not the bot, may be the limit (see the rows)")
    return "\n".join(lines)


def _ratio(one_rows: list[Row], two_rows: list[Row]) -> str:
    """The ratio of the largest passing N, two processes over one, against the target."""
    one, two = largest_passing(one_rows), largest_passing(two_rows)
    one_failed, two_failed = _first_failing(one_rows), _first_failing(two_rows)
    if not one:
        return "ratio two/one: - (one process passed no step: lower --steps)"
    if one_failed is None:
        return f"ratio two/one: not measured, one process passed every step up to {one} (raise --steps)"
    ratio = two / one
    if two_failed is None:
        return (f"ratio two/one: at least {ratio:.2f}x, two processes passed every step up to {two} "
                f"(raise --steps); target {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'undecided'}")
    # Each setup's real limit lies between its largest passing N and its first failing one.
    low, high = two / one_failed.speakers, two_failed.speakers / one
    return (f"ratio two/one: {ratio:.2f}x (target {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}); "
            f"the steps leave it between {low:.2f}x and {high:.2f}x")


def _first_failing(rows: list[Row]) -> Row | None:
    return next((r for r in rows if not r.passed), None)


def _host(row: Row) -> str:
    return f"{row.host_speed:.2f}" if row.host_speed is not None else "-"


def _why(row: Row) -> str:
    """What failed the step, in the pass rule's terms."""
    losses = {"sink": row.sink_drops, "kernel": row.kernel_drops, "decrypt": row.decrypt_failures,
              "other": row.other_loss}
    reasons = [f"{v} {k} loss" for k, v in losses.items() if v]
    if row.lag_ms is None:
        reasons.append("did not run")
    elif row.lag_ms >= LAG_LIMIT_MS:
        reasons.append(f"lag {row.lag_ms:.0f} ms")
    if not row.window_saw_load:
        reasons.append("window missed the load")
    if not row.offered:
        reasons.append("nothing offered")
    elif not reasons:
        reasons.append(f"received {row.received} of {row.offered}")
    return ", ".join(reasons)


def main(argv: list[str]) -> int:
    """Parse the options, measure both setups turn by turn, print the table."""
    parser = step_options("python -m tests.bench shards", __doc__.split("\n")[0], "80,100,120,...,400")
    args = parser.parse_args(argv)
    steps = chosen_steps(args, list(range(80, 401, 20)), quick_per_room=5)
    work = Path(tempfile.mkdtemp(prefix="shards-bench-"))
    reference_ms = hostspeed.calibrate()
    print(f"shards benchmark: load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, work dir {work}; "
          f"host: the fixed loop took {reference_ms or 0:.1f} ms of CPU at the start (fastest of 3 s)", flush=True)
    results: dict[Setup, list[Row]] = {setup: [] for setup in SETUPS}
    try:
        with running_server() as server:
            print(HEADER, flush=True)
            for index, n in enumerate(steps):
                for number, setup in enumerate(SETUPS):
                    if _first_failing(results[setup]) is not None:
                        continue
                    row = _step(setup, n, args, work / f"step-{index}-{number}", server)
                    results[setup].append(drop_recordings(rate_host(row, reference_ms), work, args.keep))
                    print(format_row(row), flush=True)
                if all(_first_failing(rows) is not None for rows in results.values()):
                    break
        print()
        print(_summary(results), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _step(setup: Setup, n: int, args: argparse.Namespace, workdir: Path, server: PostgresServer) -> Row:
    """One measured step; a step that cannot even run is a failed step, not a crash."""
    workdir.mkdir()
    try:
        return measure(setup, n, per_room=args.per_room, warmup=args.warmup, window=args.window,
                       workdir=workdir, server=server)
    except Exception as exc:
        traceback.print_exc()
        return Row(f"{setup.name}, DAVE on", n, 0, notes=[f"step failed: {exc!r}"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
