"""Full-path load: N simulated speakers -> UDP loopback -> the real bot process, and discord-ext-voice-recv.

Run: ``python -m tests.bench load [--quick] [--steps 50,100,...] [--soak SECONDS]``
(``--help`` lists the rest: ``--only``, ``--dave``, ``--no-single``, ``--profile``...).

For each N the stage (loopback Discord + load generator, in this process)
puts N speakers in voice, spread over voice channels of at most
``--per-room`` speakers (one guild and one voice connection each) or all in
one channel; the bot is started, records with ``/record start`` in every
guild, and every speaker then streams pre-encoded Opus at 50 packets/s
(DAVE-encrypted per speaker when DAVE is on). After a warm-up, the window
measures the bot's CPU and RSS (/proc) and its worker lag (``/record status``
every 2 s; the largest lag of the whole recording, start-up included, from
the engine's counters is shown beside it);
at the end the loss is split by cause: sink queue drops (engine counters
logged at close), kernel drops (/proc/net/udp drops of the bot's sockets),
decrypt failures (receive counters logged at stop), and whatever is left.
The ``host`` column is how fast the machine ran a fixed loop of Python during
the window (median), against its fastest run at the start (see
:mod:`tests.bench.load.hostspeed`: these machines are shared, and a slow
minute moves the result as much as a code change).
A step passes with zero loss of every kind over the whole recording and
worker lag in the window under 200 ms;
N grows until a step fails. discord-ext-voice-recv (DAVE off; its own venv)
is measured the same way with a WAV per user, and the table ends with the
ratio of the largest passing N.

``--profile all|gil`` runs py-spy on the bot during each window and prints
where its time goes (per thread, own and inclusive, by function).

``--soak SECONDS`` instead streams ``--soak-speakers`` speakers (DAVE on) to
the bot for that long and prints RSS every 30 s and its growth.

``python -m tests.bench shards`` (:mod:`tests.bench.shards_bench`) runs this
benchmark's step (:func:`measure_ours`, which drives one bot process or several
on disjoint shards and sums their figures) and pass rule against one process
running two gateway shards and two processes running one each, in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.bench.load import hostspeed, probes
from tests.bench.load.ourbot import OurBot, OurBots
from tests.bench.load.profile import Profiler, thread_names
from tests.bench.load.stage import Stage, rooms_for
from tests.bench.load.vrecv import VoiceRecvBot, ensure_venv
from tests.fakediscord.loadgen import FRAME_SECONDS, SUB_SLOTS

LAG_LIMIT_MS = 200.0
#: Share of one core (%) from which the load generator, one thread, may be what limits a step.
GENERATOR_NEAR_CORE = 80.0
#: Share of its sub-slots the generator may start late before it may be what limits a step
#: (a few late ones come from any busy minute of a shared machine).
GENERATOR_LATE_SHARE = 0.01
#: Share of the nominal rate (50 packets/s per speaker) below which the generator offered too little.
GENERATOR_MIN_RATE = 0.98
#: A step's window must see the load streaming this much of its time to count (slow
#: ``/record status`` answers can push it past the end of the stream).
MIN_WINDOW_SHARE = 0.9
#: Counters of the receive log line that are not losses.
_NOT_LOSS = {"datagrams", "accepted", "held"}


@dataclass
class Row:
    """One measured step."""

    who: str
    speakers: int
    rooms: int
    offered: int = 0
    seconds: float = 0.0
    received: int = 0
    sink_drops: int = 0
    kernel_drops: int = 0
    decrypt_failures: int = 0
    other_loss: int = 0
    #: Worker lag in the measuring window (steady state), the pass criterion.
    lag_ms: float | None = None
    #: Largest worker lag sampled over the whole recording (start-up burst included).
    whole_lag_ms: float | None = None
    bot_cpu: float = 0.0
    gen_cpu: float = 0.0
    rss_mb: float = 0.0
    write_p99_us: float | None = None
    setup_s: float = 0.0
    join_s: float = 0.0
    late_slots: int = 0
    #: Milliseconds of CPU the fixed loop of :mod:`tests.bench.load.hostspeed` took in the window.
    host_ms: float | None = None
    #: The loop's fastest time at the start of the run over its median in the window (below 1: slower).
    host_speed: float | None = None
    #: Share of the measuring window during which the load streamed (None: not followed).
    window_share: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def generator_limited(self) -> bool:
        """Whether the load generator was near a full core, started more than
        :data:`GENERATOR_LATE_SHARE` of its sub-slots late, or offered less than
        :data:`GENERATOR_MIN_RATE` of the nominal rate: then it, not the recorder,
        may be what the step measured."""
        sub_slots = self.seconds / FRAME_SECONDS * SUB_SLOTS
        slow = self.seconds > 0 and self.offered / self.seconds < GENERATOR_MIN_RATE * self.speakers / FRAME_SECONDS
        return (self.gen_cpu >= GENERATOR_NEAR_CORE or self.late_slots > GENERATOR_LATE_SHARE * sub_slots
                or slow)

    @property
    def passed(self) -> bool:
        """Zero loss of every kind, everything offered received, lag under the limit."""
        return (self.offered > 0 and self.received == self.offered and not self.sink_drops
                and not self.kernel_drops and not self.decrypt_failures and not self.other_loss
                and self.lag_ms is not None and self.lag_ms < LAG_LIMIT_MS and self.window_saw_load)

    @property
    def window_saw_load(self) -> bool:
        """Whether the measuring window saw the load for at least :data:`MIN_WINDOW_SHARE` of its time."""
        return self.window_share is None or self.window_share >= MIN_WINDOW_SHARE


class _Window:
    """CPU of the bot's processes (summed) and of this process (the generator) over the measuring
    window, peak RSS (of the processes together), and how fast the machine ran meanwhile."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._host = hostspeed.HostSpeed()
        self._bots0 = [probes.sample(pid) for pid in self.pids]
        self._gen0 = probes.sample(os.getpid())
        self._names = {pid: thread_names(pid) for pid in self.pids}
        self._threads0 = self._thread_cpu()
        self._t0 = time.monotonic()
        self.rss_peak = sum(s.rss_bytes for s in self._bots0)

    def _thread_cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid in self.pids:
            for kind, seconds in probes.thread_cpu(pid, self._names[pid]).items():
                out[kind] = out.get(kind, 0.0) + seconds
        return out

    def poll(self) -> None:
        self.rss_peak = max(self.rss_peak, sum(probes.sample(pid).rss_bytes for pid in self.pids))

    def close(self, row: Row) -> None:
        bots, gen = [probes.sample(pid) for pid in self.pids], probes.sample(os.getpid())
        elapsed = time.monotonic() - self._t0
        per_process = [100 * (now.cpu_seconds - then.cpu_seconds) / elapsed for now, then in zip(bots, self._bots0)]
        row.bot_cpu = sum(per_process)
        row.gen_cpu = 100 * (gen.cpu_seconds - self._gen0.cpu_seconds) / elapsed
        if len(per_process) > 1:
            row.notes.append("bot CPU % by process: " + ", ".join(f"{v:.0f}" for v in per_process))
        threads = self._thread_cpu()
        shares = {k: 100 * (v - self._threads0.get(k, 0.0)) / elapsed for k, v in threads.items()}
        busy = sorted(((v, k) for k, v in shares.items() if v >= 0.5), reverse=True)
        row.notes.append("bot CPU % by thread kind: " + ", ".join(f"{k} {v:.0f}" for v, k in busy))
        self.rss_peak = max(self.rss_peak, sum(b.rss_bytes for b in bots))
        row.rss_mb = self.rss_peak / 2**20
        row.host_ms = self._host.median()


def _stream_in_background(stage: Stage, seconds: float) -> Callable[[], Any]:
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result["stats"] = stage.stream(seconds)
        except BaseException as exc:  # handed to the caller by join()
            result["error"] = exc

    thread = threading.Thread(target=body, name="load stream", daemon=True)
    thread.start()

    def join() -> Any:
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["stats"]
    return join


def measure_ours(*, dave: bool, speakers: int, rooms: int, warmup: float, window: float,
                 workdir: Path, env: Mapping[str, str], profile: str | None = None, who: str | None = None,
                 shards: int = 1, processes: Sequence[Mapping[str, str]] = ({},)) -> Row:
    """One step against the real bot; ``profile`` ("all" or "gil") runs py-spy on it during the window.

    The stage's guilds take turns over ``shards`` gateway shards; one bot process
    runs per entry of ``processes`` (its environment on top of ``env``, e.g. its
    ``SHARD_IDS``), and their figures are summed into the row.
    """
    if profile and len(processes) > 1:
        raise ValueError("--profile follows one bot process")
    row = Row(who or f"ours, DAVE {'on' if dave else 'off'}", speakers, rooms)
    stage = Stage.start(dave=dave, speakers=speakers, rooms=rooms, shards=shards)
    row.setup_s = stage.setup_seconds
    bot = None
    try:
        bot = OurBots(stage, workdir, env, processes)
        if len(bot.bots) > 1:
            row.notes.append("speakers per process: " + ", ".join(
                f"{sum(len(r.speaker_ids) for r in b.rooms)} in {len(b.rooms)} guilds" for b in bot.bots))
        began = time.monotonic()
        bot.start_recording()
        stage.wait_listener()
        row.join_s = time.monotonic() - began
        streamed_from = time.monotonic()
        join = _stream_in_background(stage, warmup + window)
        # Through the warm-up: when lag and drops happen (start-up, or steady state).
        began, timeline = time.monotonic(), []
        while time.monotonic() - began < warmup:
            polled = bot.status()
            timeline.append(f"{time.monotonic() - began:.0f}s:{max(s.lag_ms for s in polled)}/"
                            f"{sum(s.dropped for s in polled)}")
            time.sleep(min(1.0, max(0.0, warmup - (time.monotonic() - began))))
        row.notes.append("warm-up, worker lag ms / sink drops: " + " ".join(timeline))
        probe = _Window(bot.pids)
        window_from = time.monotonic()
        profiler = (Profiler(bot.pids[0], window, workdir / "profile.raw", gil_only=profile == "gil")
                    if profile else None)
        lags = []
        end = time.monotonic() + window
        while time.monotonic() < end:
            lags += [s.lag_ms for s in bot.status()]
            probe.poll()
            time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        probe.close(row)
        window_to = time.monotonic()
        if profiler is not None:
            row.notes.append(profiler.finish())
        sent = join()
        row.offered, row.seconds, row.late_slots = sent.total, sent.seconds, sent.late_slots
        overlap = min(window_to, streamed_from + sent.seconds) - max(window_from, streamed_from)
        row.window_share = max(0.0, overlap) / (window_to - window_from)
        # Let the workers drain, then read what an operator sees.
        deadline = time.monotonic() + 60
        while any(s.lag_ms for s in bot.status()) and time.monotonic() < deadline:
            time.sleep(0.5)
        row.kernel_drops = bot.udp_drops()
        receive, engine = bot.stop_recording()
        row.received = sum(r.get("accepted", 0) for r in receive)
        row.decrypt_failures = sum(v for r in receive for k, v in r.items()
                                   if k.startswith(("dave", "transport", "decrypt", "auth")))
        row.sink_drops = sum(e["dropped"] for e in engine)
        other = sum(v for r in receive for k, v in r.items() if k not in _NOT_LOSS)
        row.other_loss = max(0, other - row.decrypt_failures - row.sink_drops)
        missing = row.offered - row.received - row.sink_drops - row.kernel_drops - row.decrypt_failures
        row.other_loss += max(0, missing - row.other_loss)
        row.lag_ms = max(lags)
        row.whole_lag_ms = max(1000 * e["worker_lag_max"] for e in engine)
        p99s = [e["write_p99_us"] for e in engine if e["write_p99_us"] is not None]
        row.write_p99_us = max(p99s) if p99s else None
        reasons = {k: v for r in receive for k, v in r.items() if k not in _NOT_LOSS and v}
        if reasons:
            row.notes.append(f"receive: {reasons}")
    finally:
        if bot is not None:
            bot.terminate()
        stage.close()
    return row


def measure_vrecv(*, speakers: int, rooms: int, warmup: float, window: float, workdir: Path,
                  python: Path) -> Row:
    """One step against discord-ext-voice-recv (DAVE off)."""
    row = Row("discord-ext-voice-recv, DAVE off", speakers, rooms)
    stage = Stage.start(dave=False, speakers=speakers, rooms=rooms)
    row.setup_s = stage.setup_seconds
    bot = None
    try:
        began = time.monotonic()
        bot = VoiceRecvBot(stage, workdir, python)
        stage.wait_listener()
        row.join_s = time.monotonic() - began
        join = _stream_in_background(stage, warmup + window)
        time.sleep(warmup)
        probe = _Window([bot.pid])
        end = time.monotonic() + window
        while time.monotonic() < end:
            probe.poll()
            time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        probe.close(row)
        sent = join()
        finished = time.monotonic()
        row.offered, row.seconds, row.late_slots = sent.total, sent.seconds, sent.late_slots
        # Its "lag": how long after the last packet went out its sink still received.
        last, last_change = -1, finished
        while time.monotonic() - last_change < 2.0 and time.monotonic() - finished < 60:
            got = bot.stats()["packets"]
            if got != last:
                last, last_change = got, time.monotonic()
            time.sleep(0.2)
        row.lag_ms = 1000 * max(0.0, last_change - finished - 0.2)
        row.kernel_drops = probes.udp_drops(bot.pid)
        final = bot.stop()
        row.received = final["packets"] + final["buffered"]
        row.other_loss = max(0, row.offered - row.received - row.kernel_drops)
        if final["filled"]:
            row.notes.append(f"voice-recv filled in {final['filled']} frames itself")
    finally:
        if bot is not None:
            bot.kill()
        stage.close()
    return row


def sweep(name: str, steps: list[int], measure: Callable[[int], Row]) -> list[Row]:
    """Measure each N in turn until one fails; print each row as it comes."""
    rows = []
    for n in steps:
        try:
            row = measure(n)
        except Exception as exc:  # a step that cannot even run is a failed step, not a crash
            traceback.print_exc()
            row = Row(name, n, 0, notes=[f"step failed: {exc!r}"])
        rows.append(row)
        print(format_row(row), flush=True)
        if not row.passed:
            break
    return rows


HEADER = (f"{'who':<34} {'N':>4} {'conn':>4} {'offered/s':>9} {'received':>9} {'sink':>5} {'kernel':>6} "
           f"{'decrypt':>7} {'other':>6} {'lag ms':>7} {'(whole)':>7} {'bot CPU%':>8} {'gen CPU%':>8} {'RSS MB':>7} "
           f"{'write p99 us':>12} {'setup s':>7} {'host':>5} {'pass':>4}")


def format_row(row: Row) -> str:
    """One step as a line of the table under :data:`HEADER`, its notes indented below."""
    rate = row.offered / row.seconds if row.seconds else 0.0
    lag = f"{row.lag_ms:.0f}" if row.lag_ms is not None else "-"
    whole = f"{row.whole_lag_ms:.0f}" if row.whole_lag_ms is not None else "-"
    p99 = f"{row.write_p99_us:.2f}" if row.write_p99_us is not None else "-"
    host = f"{row.host_speed:.2f}" if row.host_speed is not None else "-"
    text = (f"{row.who:<34} {row.speakers:>4} {row.rooms:>4} {rate:>9.0f} {row.received:>9} {row.sink_drops:>5} "
            f"{row.kernel_drops:>6} {row.decrypt_failures:>7} {row.other_loss:>6} {lag:>7} {whole:>7} {row.bot_cpu:>8.0f} "
            f"{row.gen_cpu:>8.0f} {row.rss_mb:>7.0f} {p99:>12} {row.setup_s + row.join_s:>7.1f} {host:>5} "
            f"{'yes' if row.passed else 'NO':>4}")
    notes = list(row.notes)
    if not row.window_saw_load:
        notes.append(f"the load streamed during only {100 * (row.window_share or 0):.0f} % of the window (the bot "
                     "answered /record status slowly): the step is not measured, so it does not pass")
    if row.generator_limited:
        notes.append(f"the load generator used {row.gen_cpu:.0f} % of a core, started {row.late_slots} of its "
                     f"{row.seconds / FRAME_SECONDS * SUB_SLOTS:.0f} sub-slots late and offered "
                     f"{row.offered / row.seconds if row.seconds else 0:.0f} of {row.speakers / FRAME_SECONDS:.0f} "
                     "packets/s: it, not the recorder, may be the limit of this step")
    return text + "".join(f"\n    {note}" for note in notes)


def largest_passing(rows: list[Row]) -> int:
    """The largest N among the rows that passed (0: none did)."""
    return max((r.speakers for r in rows if r.passed), default=0)


def soak(seconds: float, speakers: int, per_room: int, workdir: Path, env: dict[str, str]) -> None:
    """RSS of the bot while ``speakers`` stream for ``seconds`` (DAVE on)."""
    rooms = rooms_for(speakers, per_room)
    stage = Stage.start(dave=True, speakers=speakers, rooms=rooms)
    bot = None
    try:
        bot = OurBot(stage, workdir, env)
        bot.start_recording()
        stage.wait_listener()
        join = _stream_in_background(stage, seconds)
        began = time.monotonic()
        readings = []
        while time.monotonic() - began < seconds:
            time.sleep(min(30.0, max(0.0, seconds - (time.monotonic() - began))))
            rss = probes.sample(bot.pid).rss_bytes / 2**20
            readings.append(rss)
            print(f"  t={time.monotonic() - began:6.0f} s  RSS {rss:7.1f} MB", flush=True)
        sent = join()
        receive, engine = bot.stop_recording()
        accepted = sum(r.get("accepted", 0) for r in receive)
        # The first reading is after 30 s of load: buffers and caches have their size by then.
        growth = readings[-1] - readings[0] if len(readings) > 1 else 0.0
        print(f"soak: {speakers} speakers, {rooms} connections, {seconds:.0f} s, {sent.total} offered, "
              f"{accepted} received, sink drops {sum(e['dropped'] for e in engine)}, "
              f"RSS {readings[0]:.1f} -> {readings[-1]:.1f} MB (growth {growth:+.1f} MB, target < 10 MB)")
    finally:
        if bot is not None:
            bot.terminate()
        stage.close()


def step_options(prog: str, description: str, default_steps: str) -> argparse.ArgumentParser:
    """A parser with the options of every benchmark that steps N up: ``--quick``,
    ``--steps``, ``--per-room``, ``--warmup``, ``--window``, ``--keep``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 and 20 speakers, short windows")
    parser.add_argument("--steps", help=f"comma-separated N values (default {default_steps})")
    parser.add_argument("--per-room", type=int, default=50, help="speakers per voice connection (default 50)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the window")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per step")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, WAVs)")
    return parser


def chosen_steps(args: argparse.Namespace, default_steps: list[int], quick_per_room: int) -> list[int]:
    """The N values to measure; ``--quick`` also shortens the windows and the rooms."""
    steps = default_steps
    if args.quick:
        steps = [10, 20]
        args.warmup, args.window, args.per_room = 2.0, 5.0, quick_per_room
    if args.steps:
        steps = [int(s) for s in args.steps.split(",")]
    return steps


def main(argv: list[str]) -> int:
    """Parse the options, run the sweeps (or the soak), print the table."""
    parser = step_options("python -m tests.bench load", __doc__.split("\n")[0], "50,100,200,300,400,500,600")
    parser.add_argument("--only", choices=["ours", "vrecv"], help="measure only one recorder")
    parser.add_argument("--dave", choices=["on", "off"], help="measure our bot only with DAVE on, or off")
    parser.add_argument("--no-single", action="store_true", help="skip the one-connection sweeps")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="RSS soak instead of the sweeps")
    parser.add_argument("--soak-speakers", type=int, default=100)
    parser.add_argument("--profile", choices=["all", "gil"],
                        help="py-spy the bot during each window (all samples, or only those holding the GIL)")
    args = parser.parse_args(argv)
    steps = chosen_steps(args, [50, 100, 200, 300, 400, 500, 600], quick_per_room=10)
    work = Path(tempfile.mkdtemp(prefix="load-bench-"))
    env: dict[str, str] = {}
    reference_ms = hostspeed.calibrate()
    print(f"load benchmark: load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, work dir {work}; "
          f"host: the fixed loop took {reference_ms or 0:.1f} ms of CPU at the start (fastest of 3 s)", flush=True)
    try:
        if args.soak:
            soak(args.soak, args.soak_speakers, args.per_room, work, env)
            return 0
        counter = iter(range(10**6))

        def step_dir() -> Path:
            path = work / f"step-{next(counter)}"
            path.mkdir()
            return path

        def ours(dave: bool, single: bool) -> Callable[[int], Row]:
            return lambda n: drop_recordings(rate_host(measure_ours(
                dave=dave, speakers=n, rooms=1 if single else rooms_for(n, args.per_room),
                warmup=args.warmup, window=args.window, workdir=step_dir(), env=env,
                profile=args.profile), reference_ms), work, args.keep)

        def theirs(python: Path, single: bool) -> Callable[[int], Row]:
            return lambda n: drop_recordings(rate_host(measure_vrecv(
                speakers=n, rooms=1 if single else rooms_for(n, args.per_room),
                warmup=args.warmup, window=args.window, workdir=step_dir(), python=python),
                reference_ms), work, args.keep)

        print(HEADER, flush=True)
        results: dict[str, list[Row]] = {}
        layouts = [False] if args.no_single else [False, True]
        for single in layouts:
            label = "1 connection" if single else f"<= {args.per_room} per connection"
            if args.only != "vrecv":
                for dave in (True, False):
                    if args.dave in (None, "on" if dave else "off"):
                        results[f"ours DAVE {'on' if dave else 'off'}, {label}"] = sweep(
                            "ours", steps, ours(dave, single))
            if args.only != "ours":
                python = ensure_venv()
                results[f"voice-recv DAVE off, {label}"] = sweep("voice-recv", steps, theirs(python, single))
        print()
        print(f"largest N with zero loss and worker lag < {LAG_LIMIT_MS:.0f} ms "
              f"(load average now {os.getloadavg()[0]:.2f}):")
        for name, rows in results.items():
            print(f"  {name:<44} {largest_passing(rows)}")
        for single in layouts:
            label = "1 connection" if single else f"<= {args.per_room} per connection"
            theirs_best = largest_passing(results.get(f"voice-recv DAVE off, {label}", []))
            if theirs_best:
                for dave in ("on", "off"):
                    if f"ours DAVE {dave}, {label}" not in results:
                        continue
                    ours_best = largest_passing(results[f"ours DAVE {dave}, {label}"])
                    print(f"  ratio ours (DAVE {dave}) / voice-recv, {label}: {ours_best / theirs_best:.1f}x")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def rate_host(row: Row, reference_ms: float | None) -> Row:
    """Set ``row.host_speed`` against the loop's time at the start of the run."""
    if reference_ms and row.host_ms:
        row.host_speed = reference_ms / row.host_ms
    return row


def drop_recordings(row: Row, work: Path, keep: bool) -> Row:
    """Recordings are big (96 kB/s per speaker): drop those under ``work`` once a step is measured."""
    if not keep:
        for pattern in ("step-*/recordings", "step-*/bot-*/recordings", "step-*/wav"):
            for path in work.glob(pattern):
                shutil.rmtree(path, ignore_errors=True)
    return row


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
