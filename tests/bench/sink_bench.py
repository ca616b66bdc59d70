"""AudioSink benchmark: write() latency under load and worker throughput, against a
baseline that decodes and writes to disk inside write() under a global lock.

Run: ``python -m tests.bench.sink_bench [--speakers N] [--seconds S]`` (or ``python -m tests.bench``).
Targets: write() p99 under 10 us; one worker keeps up with at least 300 speakers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from sinks import AudioSink, VoicePacket
from sinks.opus import FRAME_SAMPLES, OpusDecoder, OpusEncoder
from sinks.wavfile import WavWriter

PACKETS_PER_SECOND = 50


class _Recorder(Protocol):
    def write(self, user_id: int, packet: VoicePacket) -> bool: ...
    def close(self) -> None: ...


class LockedRecorder:
    """The baseline: decode and append to the user's WAV inside write(), under one lock."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._users: dict[int, tuple[OpusDecoder, WavWriter]] = {}
        self._last_sync = time.monotonic()

    def write(self, user_id: int, packet: VoicePacket) -> bool:
        with self._lock:
            entry = self._users.get(user_id)
            if entry is None:
                entry = self._users[user_id] = (OpusDecoder(1), WavWriter(f"{self._directory}/{user_id}.wav", 1))
            decoder, writer = entry
            writer.append(decoder.decode(packet.opus))
            now = time.monotonic()
            if now - self._last_sync >= 1.0:
                for _, w in self._users.values():
                    w.sync_header()
                self._last_sync = now
        return True

    def close(self) -> None:
        with self._lock:
            for _, writer in self._users.values():
                writer.close()


def _speech_like_frames(count: int) -> list[bytes]:
    """Opus frames of a vowel-like harmonic signal with noise: costs what speech costs to decode."""
    rng = np.random.default_rng(1)
    t = np.arange(count * FRAME_SAMPLES) / 48_000
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 48_000
    signal = sum(np.sin(h * phase) / h for h in range(1, 12)) * 6000 + rng.normal(0, 300, len(t))
    pcm = signal.astype(np.int16).reshape(-1, 1)
    encoder = OpusEncoder(1, 64_000)
    return [encoder.encode(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]) for i in range(count)]


def _paced_latencies(recorder: _Recorder, frames: list[bytes], speakers: int, seconds: float) -> tuple[np.ndarray, int]:
    """Every 20 ms, one packet per speaker (a socket thread's burst); time each write()."""
    perf = time.perf_counter_ns
    lat = np.empty(int(seconds * PACKETS_PER_SECOND) * speakers, dtype=np.int64)
    refused = 0
    i = 0
    start = time.monotonic()
    for k in range(int(seconds * PACKETS_PER_SECOND)):
        due = start + k / PACKETS_PER_SECOND
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        opus = frames[k % len(frames)]
        for user in range(speakers):
            packet = VoicePacket(k & 0xFFFF, k * FRAME_SAMPLES, opus, due, user)
            t0 = perf()
            ok = recorder.write(user, packet)
            lat[i] = perf() - t0
            i += 1
            refused += not ok
    return lat[:i], refused


def _worker_throughput(directory: str, frames: list[bytes], speakers: int, per_speaker: int) -> tuple[float, float]:
    """Fill the queue while the worker is held, release it, time the drain. Returns (packets/s, worker CPU us/packet)."""
    gate, held = threading.Event(), threading.Event()
    main = threading.get_ident()
    fake_now = [0.0]

    def clock() -> float:
        if threading.get_ident() != main and not gate.is_set():
            held.set()
            gate.wait()
        return fake_now[0]

    total = speakers * per_speaker
    sink = AudioSink(directory, queue_size=total + 10, clock=clock)
    sink.write(0, VoicePacket(0, 0, frames[0], 0.0, 10_000))
    held.wait()
    for k in range(per_speaker):
        opus = frames[k % len(frames)]
        for user in range(1, speakers + 1):
            sink.write(user, VoicePacket(k, k * FRAME_SAMPLES, opus, k * 0.02, user))
    fake_now[0] = per_speaker * 0.02
    cpu_clock = time.pthread_getcpuclockid(sink._pool._threads[0].ident)  # noqa: SLF001 - measuring the worker itself
    cpu0 = time.clock_gettime(cpu_clock)
    t0 = time.perf_counter()
    gate.set()
    # Poll the worker's queue, not stats(): a full snapshot of 300 users costs the
    # polling thread ~1-2 ms of GIL every round, taken from the worker being timed.
    queues = [worker.items for worker in sink._pool.workers]  # noqa: SLF001 - measuring the worker itself
    while any(q.qsize() for q in queues):
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    cpu = time.clock_gettime(cpu_clock) - cpu0
    sink.close()
    return total / elapsed, cpu / total * 1e6


def _baseline_throughput(directory: str, frames: list[bytes], speakers: int, per_speaker: int) -> tuple[float, float]:
    recorder = LockedRecorder(directory)
    total = speakers * per_speaker
    cpu0, t0 = time.thread_time(), time.perf_counter()
    for k in range(per_speaker):
        opus = frames[k % len(frames)]
        for user in range(speakers):
            recorder.write(user, VoicePacket(k, k * FRAME_SAMPLES, opus, 0.0, user))
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    recorder.close()
    return total / elapsed, cpu / total * 1e6


def _us(ns: np.ndarray, q: float) -> str:
    return f"{np.percentile(ns, q) / 1000:.2f}"


def run(speakers: int, seconds: float, out: Callable[[str], None] = print) -> None:
    """Measure both recorders and print the table."""
    frames = _speech_like_frames(250)
    rows: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        sink = AudioSink(a)
        lat_sink, refused_sink = _paced_latencies(sink, frames, speakers, seconds)
        sink.close()
        dropped = sink.stats().dropped
        base = LockedRecorder(b)
        lat_base, _ = _paced_latencies(base, frames, speakers, seconds)
        base.close()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        pps_sink, cpu_sink = _worker_throughput(a, frames, speakers, 100)
        pps_base, cpu_base = _baseline_throughput(b, frames, speakers, 100)
    rows["write() p50 (us)"] = [_us(lat_sink, 50), _us(lat_base, 50)]
    rows["write() p99 (us)"] = [_us(lat_sink, 99), _us(lat_base, 99)]
    rows["write() max (us)"] = [f"{lat_sink.max() / 1000:.0f}", f"{lat_base.max() / 1000:.0f}"]
    rows["packets dropped under load"] = [f"{dropped} ({refused_sink} refused)", "0 (cannot drop)"]
    rows["decode+write throughput (pkt/s)"] = [f"{pps_sink:,.0f}", f"{pps_base:,.0f}"]
    rows["  = speakers at 50 pkt/s"] = [f"{pps_sink / PACKETS_PER_SECOND:,.0f}", f"{pps_base / PACKETS_PER_SECOND:,.0f}"]
    rows["CPU per packet (us)"] = [f"{cpu_sink:.1f} (worker)", f"{cpu_base:.1f} (caller)"]
    out(f"AudioSink vs baseline: {speakers} speakers x {PACKETS_PER_SECOND} pkt/s for {seconds:g} s "
        f"(latency), {speakers} x 100 packets (throughput); mono, 64 kbit/s Opus; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    width = max(len(k) for k in rows) + 2
    out(f"{'':{width}}{'AudioSink':>22}{'baseline (locked)':>22}")
    for name, (x, y) in rows.items():
        out(f"{name:{width}}{x:>22}{y:>22}")
    p99 = np.percentile(lat_sink, 99) / 1000
    out(f"targets: write() p99 < 10 us: {'met' if p99 < 10 else 'MISSED'} ({p99:.2f}); "
        f">= 300 speakers per worker: {'met' if pps_sink >= 300 * PACKETS_PER_SECOND else 'MISSED'} "
        f"({pps_sink / PACKETS_PER_SECOND:.0f})")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=300, help="simultaneous speakers (default 300)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the latency run (default 3)")
    args = parser.parse_args(argv)
    run(args.speakers, args.seconds)


if __name__ == "__main__":
    main()
