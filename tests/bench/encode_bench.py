"""Encode benchmark: our downloads (libsndfile, in blocks) against ffmpeg doing
the same conversions in the same run.

Run: ``tests/bench/system-packages.sh && .venv/bin/python -m tests.bench encode
[--hours 1,2] [--speakers 6] [--formats wav,flac,ogg,mp3]``. For each length it generates a recording of
speech-like bursts and silence (mono 48 kHz 16-bit, as the bot records), then
for each format times the all-tracks ZIP (encode every track, then the stored
ZIP) and the mixdown, ours and ffmpeg's, one after the other on one thread
each, and prints wall time and peak RSS. Every job runs in a child process of
its own so its peak RSS (``wait4``) is its own. Not collected by pytest.

Settings: Opus with both encoders' defaults (VBR, nominal 64 kbit/s for one
channel; asking ffmpeg for our average bitrate instead would push libopus into
its slower SILK mode); MP3 as constant bitrate at the bitrate ours came out at
(libsndfile's default is LAME's CBR); FLAC at level 5 on both.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bot.web.sndlib import prefer_system_libsndfile

prefer_system_libsndfile()  # as the bot does (bot/web/__init__.py), before soundfile loads its library

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

RATE = 48000
FORMATS = ("wav", "flac", "ogg", "mp3")
_FFMPEG_CODEC = {"wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"], "ogg": ["-c:a", "libopus"],
                 "mp3": ["-c:a", "libmp3lame"]}
_BLOCK_SECONDS = 10


def _voice_bank(rng: np.random.Generator, voice: float) -> list[np.ndarray]:
    """Ten seconds of one speaker's voice, a few different takes: harmonics of a
    wandering pitch under a syllable-rate (4 Hz) envelope, a little breath noise."""
    n = _BLOCK_SECONDS * RATE
    t = np.arange(n) / RATE
    takes = []
    for _ in range(8):
        pitch = voice * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.random() * 6))
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        sound = sum(np.sin(k * phase) * rng.uniform(0.3, 1) / k for k in range(1, 7))
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.random() * 6), 0, None) ** 0.5
        takes.append(sound * envelope * 0.25)
    return takes


def _speech_block(rng: np.random.Generator, takes: list[np.ndarray]) -> np.ndarray:
    """Ten seconds of spurts of 0.5-6 s (about 30 % of the time) between pauses."""
    n = _BLOCK_SECONDS * RATE
    talking = np.zeros(n, dtype=bool)
    at = 0
    while at < n:
        talk = int(rng.uniform(0.5, 6) * RATE)
        if rng.random() < 0.3:
            talking[at:at + talk] = True
        at += talk + int(rng.uniform(0.3, 4) * RATE)
    signal = (takes[rng.integers(len(takes))] + rng.standard_normal(n) * 0.01) * talking
    return (signal * 32767).astype(np.int16)


def make_recording(directory: Path, speakers: int, hours: float) -> list[Path]:
    """``speakers`` tracks of ``hours``, written block by block."""
    rng = np.random.default_rng(7)
    paths = []
    for s in range(speakers):
        takes = _voice_bank(rng, 110.0 + 25 * s)
        path = directory / f"speaker-{s + 1}.wav"
        with sf.SoundFile(str(path), "w", RATE, 1, subtype="PCM_16", format="WAV") as f:
            for _ in range(int(hours * 3600 / _BLOCK_SECONDS)):
                f.write(_speech_block(rng, takes))
        paths.append(path)
    return paths


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _run(argv: list[str]) -> tuple[float, float]:
    """Run ``argv``; its wall seconds and peak RSS in MB. The peak is the child's
    VmHWM, read while it runs: ``wait4``'s ru_maxrss would count the parent's
    memory the child had between fork and exec."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _hwm_kb(child.pid))
        time.sleep(0.02)
    if child.returncode != 0:
        raise RuntimeError(f"{argv[:4]}... exited {child.returncode}")
    return time.perf_counter() - started, peak / 1024


def _ours(*args: str) -> tuple[float, float]:
    return _run([sys.executable, "-m", "tests.bench.encode_bench", "--child", *args])


def _kbps(path: Path, seconds: float) -> int:
    return max(6, round(path.stat().st_size * 8 / seconds / 1000))


def _ffmpeg(inputs: list[Path], out: Path, fmt: str, kbps: int | None) -> tuple[float, float]:
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1"]
    for p in inputs:
        argv += ["-i", str(p)]
    if len(inputs) > 1:  # the same sum as ours: no normalisation, as long as the longest input
        argv += ["-filter_complex", f"amix=inputs={len(inputs)}:normalize=0:duration=longest"]
    argv += _FFMPEG_CODEC[fmt] + (["-b:a", f"{kbps}k"] if kbps else []) + ["-ac", "1", "-ar", str(RATE), str(out)]
    return _run(argv)


def _stored_zip(files: list[Path], out: Path) -> tuple[float, float]:
    code = ("import sys, zipfile\n"
            "with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED, allowZip64=True) as z:\n"
            "    [z.write(p, p.rsplit('/', 1)[-1]) for p in sys.argv[2:]]")
    return _run([sys.executable, "-c", code, str(out), *map(str, files)])


def bench_length(work: Path, speakers: int, hours: float, formats: list[str]) -> list[tuple[str, ...]]:
    """Rows of the table for one recording length."""
    rec = work / f"rec-{hours}h"
    rec.mkdir()
    t0 = time.perf_counter()
    tracks = make_recording(rec, speakers, hours)
    seconds = hours * 3600
    print(f"  generated {speakers} x {hours} h ({sum(p.stat().st_size for p in tracks) / 2**30:.2f} GiB of WAV) "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for fmt in formats:
        for what in ("zip", "mix"):
            ours_dir, theirs_dir = work / "ours", work / "ffmpeg"
            for d in (ours_dir, theirs_dir):
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir()
            if what == "zip":
                ours_time, ours_rss = _ours("zip", fmt, str(ours_dir), *map(str, tracks))
                encoded = sorted(ours_dir.glob(f"*.{fmt}"))
                theirs_time, theirs_rss = 0.0, 0.0
                outs = []
                for track, mine in zip(tracks, encoded or tracks, strict=True):
                    kbps = _kbps(mine, seconds) if fmt == "mp3" else None
                    out = theirs_dir / f"{track.stem}.{fmt}"
                    elapsed, rss = _ffmpeg([track], out, fmt, kbps)
                    theirs_time, theirs_rss = theirs_time + elapsed, max(theirs_rss, rss)
                    outs.append(out)
                elapsed, rss = _stored_zip(outs, theirs_dir / "all.zip")
                theirs_time, theirs_rss = theirs_time + elapsed, max(theirs_rss, rss)
                size, their_size = (ours_dir / "all.zip").stat().st_size, (theirs_dir / "all.zip").stat().st_size
            else:
                ours_time, ours_rss = _ours("mix", fmt, str(ours_dir), *map(str, tracks))
                mine = ours_dir / f"mix.{fmt}"
                kbps = _kbps(mine, seconds) if fmt == "mp3" else None
                theirs_time, theirs_rss = _ffmpeg(tracks, theirs_dir / f"mix.{fmt}", fmt, kbps)
                size, their_size = mine.stat().st_size, (theirs_dir / f"mix.{fmt}").stat().st_size
            row = (f"{hours:g} h", "all tracks, ZIP" if what == "zip" else "mixdown", fmt, f"{size / 2**20:,.0f}", f"{their_size / 2**20:,.0f}",
                   f"{ours_time:.1f}", f"{theirs_time:.1f}", f"{ours_time / theirs_time:.2f}",
                   f"{ours_rss:.0f}", f"{theirs_rss:.0f}")
            print("  " + " | ".join(row), flush=True)
            rows.append(row)
    shutil.rmtree(rec)
    return rows


def _child(what: str, fmt_name: str, out_dir: str, tracks: list[str]) -> None:
    """One of our jobs, exactly as the server runs it (minus the HTTP)."""
    from bot.web.encode import FORMATS as OURS
    from bot.web.encode import encode_mix, encode_track, mix_name, track_name
    from bot.web.exports import mixdown_chunks, write_zip, zip_members

    fmt, out = OURS[fmt_name], Path(out_dir)
    paths = [Path(t) for t in tracks]
    directory = paths[0].parent
    if what == "zip":
        files = {}
        for p in paths:
            if fmt.name == "wav":
                files[p.name] = p.name
            else:
                encode_track(p, out / track_name(p.name, fmt), fmt, lambda _f: None)
        members = zip_members(directory, files) + zip_members(out, {track_name(p.name, fmt): track_name(p.name, fmt)
                                                                    for p in paths if fmt.name != "wav"})
        with open(out / "all.zip", "wb") as f:
            write_zip(members, f.write)
    elif fmt.name == "wav":
        with open(out / "mix.wav", "wb") as f:
            for chunk in mixdown_chunks(directory, [p.name for p in paths], RATE, 1):
                f.write(chunk)
    else:
        encode_mix(directory, [p.name for p in paths], RATE, 1, out / mix_name(fmt), fmt, lambda _f: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", default="1,2", help="recording lengths, comma-separated (default 1,2)")
    parser.add_argument("--speakers", type=int, default=6)
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated (default: all)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, fmt, out_dir, *tracks = args.child
        _child(what, fmt, out_dir, tracks)
        return
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is missing: run tests/bench/system-packages.sh (as root) first")
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at the start (the machine may be shared); "
          f"libsndfile {sf.__libsndfile_version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="encode-bench-") as tmp:
        for hours in (float(h) for h in args.hours.split(",")):
            rows += bench_length(Path(tmp), args.speakers, hours, args.formats.split(","))
    print(f"load average {os.getloadavg()[0]:.2f} at the end; "
          f"this process's own peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    header = ("length", "download", "format", "ours MiB", "ffmpeg MiB", "ours s", "ffmpeg s", "ours/ffmpeg", "ours peak RSS MB",
              "ffmpeg peak RSS MB")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
