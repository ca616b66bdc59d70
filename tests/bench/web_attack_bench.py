"""The download server under attack while a recording runs in the same process.

Phase 1: ``--downloads`` (200) concurrent ZIP downloads of one finished
recording, each checked byte for byte (CRC-32 of the whole stream against a
reference download whose member CRCs were checked against the track files).
Phase 2: ``--slow`` (500) slowloris connections trickling a header byte every
``--trickle`` seconds, while a client keeps requesting pages; time until the
server drops each one, at the bot's real idle timeout.
Phase 3: ``--stalled`` (200) ZIP downloads that never read, while a normal
ZIP download runs; the server's memory with them all open.

Throughout, an AudioSink records ``--speakers`` speakers fed in real time by a
thread writing real Opus packets (what the voice receive thread does), and
the server's RSS is sampled. The clients run in a separate process so their
work does not count against the server's memory or GIL.

Run: ``.venv/bin/python -m tests.bench.web_attack_bench [--downloads 200] [--slow 500]``.
Prints tables. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import multiprocessing as mp
import os
import socket
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bot.storage import AsyncRecordingStore, Recording, RecordingStore
from bot.web import WebServer, create_app
from bot.web.server import IDLE_TIMEOUT
from sinks import AudioSink, EngineStats, VoicePacket
from sinks.opus import FRAME_SAMPLES, OpusEncoder
from tests.bot.wavgen import tone, write_wav

PACKETS_PER_SECOND = 50


# -- the server process: a recording, RSS, the server ------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples this process's RSS every 20 ms on its own thread; ``mark()``
    starts a new phase (its baseline is the current RSS)."""

    def __init__(self) -> None:
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def mark(self) -> None:
        """Start a phase: baseline and peak from now."""
        self.base = self.peak = _rss_mb()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


class LiveRecording:
    """An AudioSink fed in real time by a thread writing real Opus packets for
    ``speakers`` speakers, each on its own SSRC, every 20 ms."""

    def __init__(self, directory: Path, speakers: int) -> None:
        self.sink = AudioSink(directory)
        self.speakers = speakers
        self.sent = 0
        self.refused = 0
        self.late_max = 0.0  # seconds the feeder fell behind its 20 ms schedule
        self._frames = [self._frames_for(uid) for uid in range(speakers)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voice-feed", daemon=True)
        self._thread.start()

    @staticmethod
    def _frames_for(uid: int) -> list[bytes]:
        pcm = tone(200.0 + 37 * uid, 2.0, amplitude=0.3).reshape(-1, 1)
        encoder = OpusEncoder(1, 64_000)
        return [encoder.encode(pcm[i : i + FRAME_SAMPLES]) for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]

    def _run(self) -> None:
        start = time.monotonic()
        k = 0
        while not self._stop.is_set():
            due = start + k / PACKETS_PER_SECOND
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                self.late_max = max(self.late_max, now - due)
            arrival = time.monotonic()
            for uid in range(self.speakers):
                frames = self._frames[uid]
                packet = VoicePacket(k & 0xFFFF, (k * FRAME_SAMPLES) & 0xFFFFFFFF, frames[k % len(frames)],
                                     arrival, 1000 + uid)
                self.refused += not self.sink.write(uid, packet)
                self.sent += 1
            k += 1

    def stats(self) -> EngineStats:
        """The sink's counters now."""
        return self.sink.stats()

    def close(self) -> EngineStats:
        """Stop feeding, finalize the files; returns the final counters."""
        self._stop.set()
        self._thread.join()
        self.sink.close()
        return self.sink.stats()


def _finished_recording(store: RecordingStore, tracks: int, minutes: float) -> Recording:
    rec = store.create(1, "bench", 2, "vc")
    for uid in range(1, tracks + 1):
        write_wav(rec.directory / f"{uid}.wav", tone(150.0 + 50 * uid, minutes * 60, amplitude=0.3))
        store.note_speaker(rec.id, uid, f"speaker {uid}")
    store.finish(rec.id, store.new_manifest(rec))
    finished = store.get(rec.id)
    assert finished is not None
    return finished


# -- the client process ---------------------------------------------------------------------


async def _download(session: aiohttp.ClientSession, url: str) -> tuple[int, int, int, float]:
    t0 = time.perf_counter()
    crc = size = 0
    async with session.get(url) as r:
        status = r.status
        async for chunk in r.content.iter_chunked(1 << 18):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return status, size, crc, time.perf_counter() - t0


async def _zip_storm(url: str, directory: str, n: int) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        # The reference: one download, every member's CRC checked and compared with its file.
        with tempfile.TemporaryFile() as f:
            async with session.get(url) as r:
                async for chunk in r.content.iter_chunked(1 << 20):
                    f.write(chunk)
            f.seek(0)
            ref_crc = zlib.crc32(f.read())
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                assert zf.testzip() is None
                for info in zf.infolist():
                    if info.filename.endswith(".wav"):
                        assert info.CRC == zlib.crc32(Path(directory, info.filename).read_bytes()), info.filename
                ref_size = f.seek(0, os.SEEK_END)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_download(session, url) for _ in range(n)), return_exceptions=True)
        wall = time.perf_counter() - t0
    ok = [r for r in results if not isinstance(r, BaseException) and r[0] == 200 and r[1:3] == (ref_size, ref_crc)]
    times = sorted(r[3] for r in ok)
    return {"ok": len(ok), "errors": [repr(r) for r in results if isinstance(r, BaseException)][:3],
            "bad": sum(1 for r in results if not isinstance(r, BaseException) and r not in ok),
            "size": ref_size, "wall": wall, "p50": times[len(times) // 2] if times else float("nan"),
            "max": times[-1] if times else float("nan")}


async def _slowloris(
    host: str, port: int, target: str, n: int, trickle: float, probe_url: str, give_up: float
) -> dict[str, Any]:
    async def slow() -> tuple[float | None, bool]:
        reader, writer = await asyncio.open_connection(host, port)
        t0 = time.monotonic()
        pending = f"GET {target} HTTP/1.1\r\nHost: t\r\nX-Slow: ".encode() + b"s" * 10_000
        answered = False
        try:
            while pending and time.monotonic() - t0 < give_up:
                writer.write(pending[:1])
                pending = pending[1:]
                try:
                    data = await asyncio.wait_for(reader.read(1024), trickle)
                except TimeoutError:
                    continue
                if data:
                    answered = True
                else:
                    return time.monotonic() - t0, answered
            return None, answered
        except ConnectionError:
            return time.monotonic() - t0, answered
        finally:
            writer.close()

    latencies: list[float] = []
    failures = 0
    done = asyncio.Event()

    async def probe(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                async with session.get(probe_url) as r:
                    await r.read()
                    failures += r.status != 200
            except aiohttp.ClientError:
                failures += 1
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        prober = asyncio.create_task(probe(session))
        slow_results = await asyncio.gather(*(slow() for _ in range(n)), return_exceptions=True)
        done.set()
        await prober
    drops = sorted(r[0] for r in slow_results if not isinstance(r, BaseException) and r[0] is not None)
    lat = np.array(latencies or [float("nan")]) * 1000
    return {"connected": sum(not isinstance(r, BaseException) for r in slow_results), "dropped": len(drops),
            "answered": sum(1 for r in slow_results if not isinstance(r, BaseException) and r[1]),
            "drop_min": drops[0] if drops else float("nan"), "drop_p50": drops[len(drops) // 2] if drops else float("nan"),
            "drop_max": drops[-1] if drops else float("nan"), "probes": len(lat), "probe_failures": failures,
            "probe_p50": float(np.percentile(lat, 50)), "probe_p99": float(np.percentile(lat, 99)),
            "probe_max": float(lat.max())}


async def _stalled(host: str, port: int, target: str, n: int, url: str, hold: float) -> dict[str, Any]:
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        socks.append(sock)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            status, size, _crc, secs = await _download(session, url)
        await asyncio.sleep(hold)
    finally:
        for sock in socks:
            sock.close()
    return {"status": status, "size": size, "secs": secs}


def _client(job: str, kwargs: dict[str, Any], out: Any) -> None:
    fn = {"zip": _zip_storm, "slow": _slowloris, "stalled": _stalled}[job]
    out.put(asyncio.run(fn(**kwargs)))


async def _in_child(job: str, **kwargs: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # no fork: this process runs threads
    out = ctx.Queue()
    # By its importable name: run through `python -m tests.bench` this module is __main__ under another name.
    target = importlib.import_module("tests.bench.web_attack_bench")._client
    proc = ctx.Process(target=target, args=(job, kwargs, out), name=f"bench-{job}")
    proc.start()
    try:
        result = await asyncio.to_thread(out.get)
    finally:
        await asyncio.to_thread(proc.join)
    return result


# -- the run --------------------------------------------------------------------------------


@dataclasses.dataclass
class _Row:
    phase: str
    result: str
    rss: str
    recording: str


def _recording_cell(before: EngineStats, after: EngineStats, feed: LiveRecording) -> str:
    dropped = after.dropped - before.dropped
    lost = after.lost - before.lost
    return (f"dropped {dropped}, lost {lost}, worker lag max {after.worker_lag_max * 1000:.0f} ms, "
            f"feeder late max {feed.late_max * 1000:.0f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--downloads", type=int, default=200, help="concurrent ZIP downloads (default 200)")
    parser.add_argument("--tracks", type=int, default=4, help="tracks in the downloaded recording (default 4)")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of each track (default 1)")
    parser.add_argument("--speakers", type=int, default=20, help="speakers in the running recording (default 20)")
    parser.add_argument("--slow", type=int, default=500, help="slowloris connections (default 500)")
    parser.add_argument("--trickle", type=float, default=2.0, help="seconds between their bytes (default 2)")
    parser.add_argument("--stalled", type=int, default=200, help="never-reading ZIP downloads (default 200)")
    args = parser.parse_args()
    rows: list[_Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RecordingStore(Path(tmp) / "rec")
        rec = _finished_recording(store, args.tracks, args.minutes)
        live_rec = store.create(1, "bench", 3, "live")
        server = WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)  # as the bot runs it, default timeouts
        await server.start()
        rss = RssSampler()
        feed = LiveRecording(live_rec.directory, args.speakers)
        base = f"http://127.0.0.1:{server.port}"
        zip_target = f"/r/{rec.id}/all.zip?key={rec.secret}"
        page_url = f"{base}/r/{rec.id}?key={rec.secret}"
        await asyncio.sleep(1.0)
        try:
            before, _ = feed.stats(), rss.mark()
            r = await _in_child("zip", url=base + zip_target, directory=str(rec.directory), n=args.downloads)
            after = feed.stats()
            rows.append(_Row(
                f"{args.downloads} concurrent ZIPs ({r['size'] / 2**20:.1f} MiB each)",
                f"{r['ok']}/{args.downloads} complete, CRC ok; {r['bad']} wrong, {len(r['errors'])} errors; "
                f"{r['wall']:.1f} s total ({args.downloads * r['size'] / 2**20 / r['wall']:.0f} MiB/s), "
                f"per download p50 {r['p50']:.1f} s, max {r['max']:.1f} s",
                f"{rss.base:.0f} -> peak {rss.peak:.0f} MiB (+{rss.peak - rss.base:.0f})",
                _recording_cell(before, after, feed)))
            if r["errors"]:
                print("errors:", r["errors"])

            before, _ = feed.stats(), rss.mark()
            r = await _in_child("slow", host="127.0.0.1", port=server.port, target=zip_target, n=args.slow,
                                trickle=args.trickle, probe_url=page_url, give_up=5 * IDLE_TIMEOUT)
            after = feed.stats()
            rows.append(_Row(
                f"{args.slow} slowloris (1 byte / {args.trickle:g} s, idle timeout {IDLE_TIMEOUT:g} s)",
                f"{r['dropped']}/{r['connected']} dropped by the server, {r['answered']} answered; drop after "
                f"min {r['drop_min']:.1f} / p50 {r['drop_p50']:.1f} / max {r['drop_max']:.1f} s; meanwhile "
                f"{r['probes']} page requests, {r['probe_failures']} failed, p50 {r['probe_p50']:.0f} ms, "
                f"p99 {r['probe_p99']:.0f} ms, max {r['probe_max']:.0f} ms",
                f"{rss.base:.0f} -> peak {rss.peak:.0f} MiB (+{rss.peak - rss.base:.0f})",
                _recording_cell(before, after, feed)))

            before, _ = feed.stats(), rss.mark()
            r = await _in_child("stalled", host="127.0.0.1", port=server.port, target=zip_target, n=args.stalled,
                                url=base + zip_target, hold=3.0)
            after = feed.stats()
            rows.append(_Row(
                f"{args.stalled} never-reading ZIP downloads",
                f"a normal ZIP meanwhile: HTTP {r['status']}, {r['size'] / 2**20:.1f} MiB in {r['secs']:.1f} s",
                f"{rss.base:.0f} -> peak {rss.peak:.0f} MiB (+{rss.peak - rss.base:.0f}, "
                f"{(rss.peak - rss.base) * 1024 / max(1, args.stalled):.0f} KiB per stalled download)",
                _recording_cell(before, after, feed)))
        finally:
            final = feed.close()
            rss.stop()
            await server.stop()
            store.close()
    per_user = final.per_user
    sent_each = feed.sent // args.speakers
    short = {uid: sent_each - u.packets for uid, u in per_user.items() if u.packets != sent_each}
    print(f"Download server under attack; a recording of {args.speakers} speakers runs in the same process "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    for row in rows:
        print(f"- {row.phase}\n    result:    {row.result}\n    server RSS: {row.rss}\n    recording: {row.recording}")
    print(f"recording at the end: {feed.sent} packets sent, {feed.refused} refused by write(), "
          f"{final.decoded} decoded, {final.lost} lost, {final.late} late, {final.dropped} dropped, "
          f"worker lag max {final.worker_lag_max * 1000:.0f} ms; "
          f"speakers missing packets: {short or 'none'}")


if __name__ == "__main__":
    asyncio.run(main())
