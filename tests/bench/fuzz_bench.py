"""Hostile datagrams: a coverage-guided fuzz campaign on the voice receive path.

Run: ``python -m tests.bench fuzz`` (one million inputs, about a minute or
two here) or ``python -m tests.bench.fuzz_bench --inputs N --seed S``.

Needs atheris, which is not a dependency of the bot:
``.venv/bin/pip install atheris`` (or ``pip install -e '.[bench]'``); it ships
manylinux wheels for CPython 3.11.

The campaign (:mod:`tests.bench.fuzz.campaign`, in a child process because
libFuzzer ends the process it runs in) drives two real ``VoiceReceiver``
lanes with real transport keys, one reading a real davey session of a
settled three-member DAVE group and one with DAVE off, each writing into a
real ``AudioSink``. Every input becomes one forged datagram
(:mod:`tests.bench.fuzz.datagrams`: random bytes, RTCP and IP-discovery
shapes, RTP built field by field and sealed under the real key with lies in
its header bits, CSRC count, extension preamble and length, padding byte,
AAD cut and DAVE trailer, the same tampered after sealing, a wrong key, and
replays of real packets), sometimes after a SPEAKING or CLIENT_DISCONNECT
for the fuzz user; libFuzzer sees the branch coverage of ``bot`` and steers.
Every 250 inputs a real speaker sends its next frame on both lanes.

Printed, and checked (exit status 1 if any fails): inputs run, exceptions
raised (must be 0), every datagram in exactly one receiver counter
(accepted + drop reasons == datagrams fed), the count per reason, inputs/s,
and the real speaker's WAV on each lane equal, sample for sample, to the
offline decode of the frames it sent (nothing forged reached its track).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import tempfile
from typing import Any

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(args: argparse.Namespace, work: pathlib.Path) -> tuple[int, dict[str, Any] | None, str]:
    report = work / "report.json"
    log = work / "libfuzzer.log"
    command = [sys.executable, "-m", "tests.bench.fuzz.campaign", "--inputs", str(args.inputs),
               "--every", str(args.every), "--seed", str(args.seed), "--report", str(report),
               "--artifacts", str(work)]
    with log.open("w") as stderr:
        status = subprocess.run(command, cwd=_ROOT, stderr=stderr, check=False).returncode
    text = log.read_text(errors="replace")
    return status, json.loads(report.read_text()) if report.exists() else None, text


def _coverage(libfuzzer_log: str) -> str:
    found = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", libfuzzer_log)
    if not found:
        return "n/a"
    cov, ft, corp = found[-1]
    return f"{cov} edges, {ft} features, corpus {corp}"


def _table(results: dict[str, Any], coverage: str) -> list[str]:
    """Print the figures; return the failed checks."""
    lanes = results["lanes"]
    names = list(lanes)
    failures: list[str] = []
    inputs, seconds = results["inputs"], results["seconds"]
    print(f"inputs {inputs:,} in {seconds:.1f} s: {inputs / seconds:,.0f} inputs/s; libFuzzer coverage of bot: {coverage}")
    print("inputs per shape: " + ", ".join(f"{k} {v:,}" for k, v in sorted(results["shapes"].items())))
    print("map events: " + ", ".join(f"{k} {v:,}" for k, v in sorted(results["map_events"].items())))
    print(f"exceptions raised: {results['exceptions']}")
    if results["exceptions"]:
        failures.append(f"{results['exceptions']} exceptions")
        for sample in results["exception_samples"]:
            print(f"  [{sample['lane']}/{sample['shape']}] {sample['error']}  datagram {sample['datagram'][:160]}")
            print("   " + sample["traceback"].strip().replace("\n", "\n   "))
    if results["accounting_breaks"]:
        failures.append("accounting broke after some inputs")
        for item in results["accounting_breaks"]:
            print(f"  accounting gap {item['gap']} after [{item['lane']}/{item['shape']}] {item['datagram'][:160]}")
    reasons = sorted({k for lane in lanes.values() for k in lane["receive"]} - {"datagrams", "held"},
                     key=lambda k: (k != "accepted", k))
    print()
    print(f"{'receiver counter':<58}" + "".join(f"{n:>14}" for n in names))
    print(f"{'datagrams fed':<58}" + "".join(f"{lanes[n]['fed']:>14,}" for n in names))
    for reason in reasons:
        print(f"{reason:<58}" + "".join(f"{lanes[n]['receive'].get(reason, 0):>14,}" for n in names))
    for name, lane in lanes.items():
        receive = lane["receive"]
        counted = sum(v for k, v in receive.items() if k != "datagrams")
        print(f"\n[{name}] accounted {counted:,} of {lane['fed']:,} datagrams (held at end: {receive['held']}); "
              f"sink took {lane['sink_received']:,} (decode errors {lane['sink_decode_errors']:,}, error {lane['sink_error']})")
        print(f"[{name}] real speaker: {lane['speaker_frames']:,} frames sent, {lane['speaker_packets']:,} decoded, "
              f"{lane['speaker_lost']} lost; WAV equals offline decode: {lane['speaker_wav_matches']} ({lane['speaker_note']})")
        if counted != lane["fed"] or receive["datagrams"] != lane["fed"] or lane["accounting_gap"]:
            failures.append(f"{name}: {lane['fed']} fed, {receive['datagrams']} seen, {counted} counted")
        if receive["held"]:
            failures.append(f"{name}: {receive['held']} still held after close")
        if lane["sink_received"] != receive["accepted"] + receive.get("sink_full", 0):
            failures.append(f"{name}: sink took {lane['sink_received']}, receiver accepted {receive['accepted']}")
        if not lane["speaker_wav_matches"] or lane["speaker_packets"] != lane["speaker_frames"] or lane["speaker_lost"]:
            failures.append(f"{name}: the real speaker's track is not exactly what it sent")
        if lane["sink_error"] is not None:
            failures.append(f"{name}: sink error {lane['sink_error']}")
    return failures


def main() -> int:
    """Run the campaign, print the table; 0 when every check held."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=250, help="forged inputs between two real frames")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed")
    args = parser.parse_args()
    if importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: .venv/bin/pip install atheris", file=sys.stderr)
        return 2
    print(f"fuzzing the receive path with atheris: {args.inputs:,} inputs, seed {args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fuzz-bench-") as tmp:
        status, results, libfuzzer_log = _run(args, pathlib.Path(tmp))
        if status != 0 or results is None:
            print(f"campaign ended with status {status}; libFuzzer's last words:", file=sys.stderr)
            print("\n".join(libfuzzer_log.splitlines()[-30:]), file=sys.stderr)
            return 1
        failures = _table(results, _coverage(libfuzzer_log))
    print()
    print("PASS: no exception, every datagram counted once, the real speaker's tracks exact" if not failures
          else "FAIL: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    status = main()
    if status:
        sys.exit(status)
