"""The atheris campaign itself: ``python -m tests.bench.fuzz.campaign --inputs N --report FILE``.

Run by ``tests/bench/fuzz_bench.py`` in a child process, because libFuzzer
ends the process it runs in; this one writes its results to ``--report`` (JSON)
and leaves with ``os._exit`` once ``--inputs`` inputs ran.

``bot`` is imported under atheris' instrumentation, so libFuzzer's coverage
feedback sees every branch of the receive path (classify, header parse,
transport, strip, SSRC map, duplicate filter, DAVE wrapper, receiver).
Each input picks a lane (DAVE on / off), sometimes a SPEAKING or
CLIENT_DISCONNECT for the fuzz user, and one forged datagram
(:mod:`tests.bench.fuzz.datagrams`); every ``--every`` inputs the real speaker
sends its next frame on both lanes and the arrival clock moves 20 ms.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from typing import Any

import atheris

# The receiver imports the rest of bot.voice, all instrumented with it.
with atheris.instrument_imports(include=["bot"]):
    import bot.voice.receiver  # noqa: F401

import numpy as np

from sinks.opus import OpusEncoder
from tests.voice.dave_group import settled_group

from .datagrams import DatagramForge
from .lanes import BOT, FUZZ_SSRC, FUZZ_USER, REAL_SSRC, SPEAKER, DaveState, Lane, SteppedClock

#: Small SSRCs the campaign maps to the fuzz user as it runs (late SPEAKING).
BINDABLE = range(1, 41)
#: SSRCs never mapped: their packets are held, then evicted or counted at close.
UNMAPPED = (0x7000, 0x7001, 0x7002, 0x7003)
#: Exceptions kept with their input (all are counted).
KEEP_EXCEPTIONS = 5
PROGRESS_EVERY = 100_000


def _tone(freq: float, count: int, seed: int) -> list[bytes]:
    encoder = OpusEncoder(1, 64_000, False)
    rng = np.random.default_rng(seed)
    t = np.arange(count * 960) / 48_000
    pcm = (np.sin(2 * np.pi * freq * t) * 9000 + rng.normal(0, 300, t.size)).astype(np.int16).reshape(-1, 1)
    return [encoder.encode(pcm[i * 960 : (i + 1) * 960]) for i in range(count)]


class Campaign:
    """State of one run; :meth:`one_input` is libFuzzer's test function."""

    def __init__(self, inputs: int, every: int, report: pathlib.Path, workdir: pathlib.Path) -> None:
        self.inputs = inputs
        self.every = every
        self.report = report
        self.workdir = workdir
        members = settled_group([SPEAKER, FUZZ_USER, BOT])
        speaker_opus = _tone(330.0, inputs // every + 1, seed=1)
        fuzz_opus = _tone(550.0, 256, seed=2)
        fuzz_member = members[FUZZ_USER]
        fuzz_frames = itertools.cycle(fuzz_opus)
        clock = SteppedClock()
        self.clock = clock
        speaker_dave = [members[SPEAKER].encrypt_opus(f) for f in speaker_opus]
        self.lanes = [
            Lane("dave", workdir / "dave", os.urandom(32), DaveState(members[BOT].session, 1), clock,
                 speaker_dave, speaker_opus),
            Lane("plain", workdir / "plain", os.urandom(32), DaveState(None, 0), clock, speaker_opus, speaker_opus),
        ]
        ssrcs = [FUZZ_SSRC, *BINDABLE, *UNMAPPED]
        self.forges = [
            DatagramForge(lane.key, ssrcs, REAL_SSRC, lambda: fuzz_member.encrypt_opus(next(fuzz_frames)), fuzz_opus,
                          lambda lane=lane: lane.recent)
            for lane in self.lanes
        ]
        self.count = 0
        self.shapes: Counter[str] = Counter()
        self.map_events: Counter[str] = Counter()
        self.exceptions = 0
        self.exception_samples: list[dict[str, str]] = []
        self.accounting_breaks: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def one_input(self, data: bytes) -> None:
        """Run one fuzz input: maybe a map change, then one forged datagram on one lane."""
        src = atheris.FuzzedDataProvider(data)
        # Lanes take turns, so both get half the inputs whatever the corpus holds.
        lane, forge = self.lanes[self.count & 1], self.forges[self.count & 1]
        event = src.ConsumeIntInRange(0, 255)
        if event == 255:
            lane.ssrc_map.bind(src.PickValueInList([FUZZ_SSRC, *BINDABLE]), FUZZ_USER)
            self.map_events["speaking"] += 1
        elif event == 254:
            lane.ssrc_map.forget_user(FUZZ_USER)
            self.map_events["disconnect"] += 1
        shape, datagram = forge.forge(src, self.count)
        self.shapes[shape] += 1
        self._guarded(lane, shape, datagram, lambda: lane.feed(datagram))
        self.count += 1
        if self.count % self.every == 0:
            for each in self.lanes:
                self._guarded(each, "real", b"", each.speak)
            self.clock.now += 0.020
        if self.count % PROGRESS_EVERY == 0:
            elapsed = time.perf_counter() - self.started
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print(f"  {self.count:>10,} inputs  {self.count / elapsed:>8,.0f}/s  exceptions {self.exceptions}"
                  f"  rss {rss} MiB", flush=True)
        if self.count >= self.inputs:
            self._finish()

    def _guarded(self, lane: Lane, shape: str, datagram: bytes, call: Any) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 (counting anything that escapes is the point)
            self.exceptions += 1
            if len(self.exception_samples) < KEEP_EXCEPTIONS:
                self.exception_samples.append({
                    "lane": lane.name, "shape": shape, "error": repr(exc),
                    "traceback": traceback.format_exc(), "datagram": datagram.hex(),
                })
        gap = lane.accounting_gap()
        if gap and len(self.accounting_breaks) < KEEP_EXCEPTIONS:
            self.accounting_breaks.append({"lane": lane.name, "shape": shape, "gap": gap, "datagram": datagram.hex()})

    def _finish(self) -> None:
        seconds = time.perf_counter() - self.started
        results = {
            "inputs": self.count,
            "seconds": seconds,
            "shapes": dict(self.shapes),
            "map_events": dict(self.map_events),
            "exceptions": self.exceptions,
            "exception_samples": self.exception_samples,
            "accounting_breaks": self.accounting_breaks,
            "lanes": {lane.name: lane.finish() for lane in self.lanes},
        }
        self.report.write_text(json.dumps(results, indent=1))
        shutil.rmtree(self.workdir, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # libFuzzer would otherwise go on


def main() -> None:
    """Parse the options, build the campaign, hand it to libFuzzer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, required=True)
    parser.add_argument("--every", type=int, default=250, help="inputs between two real frames")
    parser.add_argument("--report", type=pathlib.Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--artifacts", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()),
                        help="where libFuzzer writes a crashing or memory-hungry input")
    args = parser.parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="fuzz-receive-"))  # removed by _finish
    campaign = Campaign(args.inputs, args.every, args.report, workdir)
    atheris.Setup([sys.argv[0], f"-seed={args.seed}", "-max_len=1600", "-len_control=0", "-print_final_stats=0",
                   f"-artifact_prefix={args.artifacts}/"], campaign.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
