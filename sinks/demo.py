"""Demo of the recording engine: three speakers, one time-aligned WAV each.

Three voices (espeak-ng if installed, else synthesized vowels at three pitches)
take turns with some overlap; their speech is encoded to real Opus, sent as
RTP-like packets with network delay, jitter, a little loss and reordering,
and recorded through :class:`sinks.AudioSink` on a simulated clock, so a
15-second conversation records in a few seconds. Then it prints what it wrote.

Run: ``python -m sinks.demo [--out DIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import pathlib
import random
import shutil
import subprocess
import sys

import numpy as np
import soundfile as sf

from . import AudioSink, VoicePacket
from .opus import FRAME_SAMPLES, SAMPLE_RATE, OpusEncoder

_log = logging.getLogger(__name__)

# (user id, espeak voice, pitch 0-99, fallback fundamental Hz)
_VOICES = {101: ("en+m3", 25, 105.0), 202: ("en+f3", 70, 215.0), 303: ("en+m1", 50, 150.0)}
# (user id, start second, words): turns, with 303 talking over 202 for a moment.
_SCRIPT = [
    (101, 0.4, "Hello everyone, this is the first speaker, testing the recorder."),
    (202, 3.9, "Hi, second speaker here. I sound higher than the first one."),
    (303, 6.6, "And I am the third, talking over the second for a moment."),
    (101, 10.4, "Thanks both. Every voice should land in its own file."),
]


class _SimClock:
    """The recording's clock, moved by the simulation instead of by time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _espeak(text: str, voice: str, pitch: int) -> np.ndarray | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        wav = subprocess.run(
            [exe, "-v", voice, "-p", str(pitch), "-s", "165", "--stdout", text],
            check=True, capture_output=True, timeout=30,
        ).stdout
        audio, rate = sf.read(io.BytesIO(wav), dtype="float64")
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        _log.info("espeak-ng failed (%s); using synthesized vowels", exc)
        return None
    t_out = np.arange(int(len(audio) * SAMPLE_RATE / rate)) / SAMPLE_RATE
    return np.interp(t_out, np.arange(len(audio)) / rate, audio) * 0.8


def _vowels(text: str, f0: float, seed: int) -> np.ndarray:
    """A vowel-like voice: harmonics of a wobbling pitch through moving formants, one syllable per word."""
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in text.split():
        n = int(SAMPLE_RATE * rng.uniform(0.18, 0.32))
        t = np.arange(n) / SAMPLE_RATE
        pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        formants = rng.choice([(700, 1200), (400, 2000), (300, 900), (550, 1700)])
        voice = sum(
            np.sin(h * phase) / h * sum(np.exp(-((h * f0 - f) / 150) ** 2) for f in formants)
            for h in range(1, int(4000 / f0))
        )
        pieces.append(voice * np.hanning(n) * 0.5)
        pieces.append(np.zeros(int(SAMPLE_RATE * 0.06)))
    return np.concatenate(pieces)


def _speech(user: int, text: str) -> np.ndarray:
    voice, pitch, f0 = _VOICES[user]
    audio = _espeak(text, voice, pitch)
    if audio is None:
        audio = _vowels(text, f0, seed=user)
    pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    pad = -len(pcm) % FRAME_SAMPLES
    return np.concatenate([pcm, np.zeros(pad, np.int16)])


def _packets(rng: random.Random) -> list[tuple[int, VoicePacket]]:
    """Every speaker's packets with arrival times: 20-35 ms delay, 2% loss, some reordering."""
    out = []
    streams = {u: (OpusEncoder(1, bitrate=48_000, fec=True), rng.randrange(1 << 16), rng.randrange(1 << 32))
               for u in _VOICES}
    sent = dict.fromkeys(_VOICES, 0)
    for user, start, text in _SCRIPT:
        encoder, seq0, ts0 = streams[user]
        pcm = _speech(user, text)
        for k in range(len(pcm) // FRAME_SAMPLES):
            t = start + k * FRAME_SAMPLES / SAMPLE_RATE
            frame = encoder.encode(pcm[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES])
            n = sent[user]
            sent[user] += 1
            if rng.random() < 0.02:
                continue
            delay = 0.02 + rng.random() * 0.015 + (0.03 if rng.random() < 0.03 else 0.0)
            out.append((user, VoicePacket(
                sequence=(seq0 + n) & 0xFFFF,
                timestamp=(ts0 + round(t * SAMPLE_RATE)) & 0xFFFF_FFFF,
                opus=frame, received_at=t + delay, ssrc=user * 1000 + 7,
            )))
    out.sort(key=lambda item: item[1].received_at)
    return out


def run(out_dir: pathlib.Path) -> int:
    """Record the demo conversation into ``out_dir``; print the files and stats."""
    clock = _SimClock()
    traffic = _packets(random.Random(7))
    sink = AudioSink(out_dir, clock=clock)
    for user, packet in traffic:
        clock.now = packet.received_at
        sink.write(user, packet)
    clock.now += 0.5
    sink.close()
    stats = sink.stats()
    print(f"recorded {len(_VOICES)} speakers to {out_dir}/")
    for user, path in sorted(sink.files().items()):
        info = sf.info(path)
        print(f"  {path}  {info.frames / info.samplerate:6.2f} s  "
              f"talk {stats.per_user[user].talk_seconds:5.2f} s  {info.channels} ch {info.samplerate} Hz")
    shown = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    print("stats: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    if stats.failure is not None:
        print(f"error: {stats.failure.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m sinks.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("recordings/demo"),
                        help="directory for the WAV files (default: ./recordings/demo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args.out)
    except OSError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
