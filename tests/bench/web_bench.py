"""Download-server benchmark: export throughput, memory and event-loop latency.

Run: ``.venv/bin/python -m tests.bench.web_bench [--tracks 4] [--minutes 10]``.
Prints a table. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import soundfile as sf

from bot.storage import AsyncRecordingStore, RecordingStore
from bot.web import WebServer, create_app

RATE = 48000


def _peak_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _make_tracks(directory: Path, tracks: int, minutes: float) -> None:
    block = RATE * 10
    rng = np.random.default_rng(1)
    for uid in range(1, tracks + 1):
        with sf.SoundFile(str(directory / f"{uid}.wav"), "w", RATE, 1, subtype="PCM_16", format="WAV") as f:
            t = np.arange(block) / RATE
            for _ in range(int(minutes * 6)):
                talking = rng.random() < 0.4
                tone = np.sin(2 * np.pi * (200 + 100 * uid) * t) * (0.4 if talking else 0.0)
                f.write((tone * 32767).astype(np.int16))


async def _probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
        worst.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)


async def _download(session: aiohttp.ClientSession, url: str, probe_url: str) -> tuple[int, float, float, float]:
    stop = asyncio.Event()
    latencies: list[float] = []
    probe = asyncio.create_task(_probe(session, probe_url, stop, latencies))
    _peak_reset()
    t0 = time.perf_counter()
    size = 0
    async with session.get(url) as r:
        r.raise_for_status()
        async for chunk in r.content.iter_chunked(1 << 20):
            size += len(chunk)
    elapsed = time.perf_counter() - t0
    stop.set()
    await probe
    return size, elapsed, _peak_mb(), max(latencies, default=float("nan")) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = RecordingStore(Path(tmp) / "rec")
        rec = store.create(1, "bench", 2, "vc")
        t0 = time.perf_counter()
        _make_tracks(rec.directory, args.tracks, args.minutes)
        for uid in range(1, args.tracks + 1):
            store.note_speaker(rec.id, uid, f"speaker {uid}")
        manifest = store.finish(rec.id, store.new_manifest(rec))
        total_mb = sum((rec.directory / s.file).stat().st_size for s in manifest.speakers) / 2**20
        print(f"{args.tracks} tracks x {args.minutes:g} min, {total_mb:.0f} MiB of WAV "
              f"(generated in {time.perf_counter() - t0:.1f} s)")
        server = WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)
        await server.start()
        base = f"http://127.0.0.1:{server.port}/r/{rec.id}"
        key = f"?key={rec.secret}"
        probe_url = f"http://127.0.0.1:{server.port}/r/{rec.id}?key=wrong"
        first = manifest.speakers[0].file
        rows = []
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for label, path in [
                ("page, first (timeline computed)", ""),
                ("page, cached", ""),
                ("ZIP of all tracks", "/all.zip"),
                ("mixdown WAV", "/mix.wav"),
                ("FLAC of one track, first (encode)", f"/flac/{first}"),
                ("FLAC of one track, cached", f"/flac/{first}"),
                ("WAV of one track", f"/files/{first}"),
            ]:
                size, secs, peak, worst = await _download(session, base + path + key, probe_url)
                rows.append((label, size / 2**20, secs, size / 2**20 / secs, peak, worst))
        await server.stop()
        store.close()
    print(f"{'download':<36} {'MiB':>8} {'s':>7} {'MiB/s':>8} {'peak RSS MiB':>13} {'worst 404 ms':>13}")
    for label, mb, secs, rate, peak, worst in rows:
        print(f"{label:<36} {mb:>8.1f} {secs:>7.2f} {rate:>8.0f} {peak:>13.0f} {worst:>13.1f}")
    print("peak RSS: whole process (client included) during that download; worst 404 ms: slowest "
          "reply to a concurrent cheap request, i.e. how long the event loop was held up.")


if __name__ == "__main__":
    asyncio.run(main())
