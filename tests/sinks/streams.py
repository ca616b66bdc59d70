"""Test helpers: real Opus packet streams with known send times, a fake clock, and audio probes."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import numpy as np

from sinks import VoicePacket
from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE, OpusDecoder, OpusEncoder

FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
#: The alignment budget (samples): a frame may land at most 20 ms from where it belongs.
ALIGNMENT_LIMIT = 20 * SAMPLE_RATE // 1000
#: Opus's algorithmic delay at 48 kHz: decoded audio starts this much after its frame's position.
CODEC_DELAY = 312


class FakeClock:
    """A clock the test moves by hand (``clock.now = ...``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tone(freq: float, frames: int, amplitude: int = 8000, pattern: Sequence[bool] | None = None) -> np.ndarray:
    """A mono int16 tone ``frames`` 20 ms frames long; ``pattern[k]`` False mutes frame k."""
    n = np.arange(frames * FRAME_SAMPLES)
    signal = np.sin(2 * np.pi * freq * n / SAMPLE_RATE) * amplitude
    if pattern is not None:
        gate = np.repeat(np.asarray(pattern, dtype=float), FRAME_SAMPLES)
        signal *= gate
    return signal.astype(np.int16)


def encode(pcm: np.ndarray, *, fec: bool = False) -> list[bytes]:
    """Encode mono int16 audio as 20 ms Opus frames with a fresh encoder."""
    encoder = OpusEncoder(1, 64_000, fec=fec)
    return [
        encoder.encode(pcm[i:i + FRAME_SAMPLES].reshape(-1, 1))
        for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
    ]


def decode_offline(frames: Iterable[bytes], channels: int = 1) -> np.ndarray:
    """Decode frames back to back with one fresh decoder: the batch reference."""
    decoder = OpusDecoder(channels)
    return np.concatenate([decoder.decode(f).copy() for f in frames])


def packets(
    frames: Sequence[bytes],
    *,
    start: float,
    seq0: int,
    ts0: int,
    ssrc: int,
    delays: Sequence[float] | None = None,
    rate: float = 1.0,
) -> list[VoicePacket]:
    """One packet per frame, frame k sent at ``start + k*20ms*rate`` and received ``delays[k]`` later.

    ``rate`` != 1 models a sender whose sample clock runs fast or slow against ours.
    """
    out = []
    for k, frame in enumerate(frames):
        delay = delays[k] if delays is not None else 0.0
        out.append(VoicePacket(
            sequence=(seq0 + k) & 0xFFFF,
            timestamp=(ts0 + k * FRAME_SAMPLES) & 0xFFFF_FFFF,
            opus=frame,
            received_at=start + k * FRAME_SECONDS * rate + delay,
            ssrc=ssrc,
        ))
    return out


def arrival_order(items: Iterable[tuple[int, VoicePacket]]) -> list[tuple[int, VoicePacket]]:
    """(user, packet) pairs sorted by arrival time, as the network would deliver them."""
    return sorted(items, key=lambda item: item[1].received_at)


def onsets(audio: np.ndarray, threshold: int = 1000, min_gap: int = SAMPLE_RATE // 10) -> list[int]:
    """Sample indices where sound starts after at least ``min_gap`` samples of quiet."""
    loud = np.flatnonzero(np.abs(audio.reshape(len(audio), -1)[:, 0].astype(np.int32)) > threshold)
    if len(loud) == 0:
        return []
    starts = [int(loud[0])]
    gaps = np.flatnonzero(np.diff(loud) > min_gap)
    starts.extend(int(loud[i + 1]) for i in gaps)
    return starts


def envelope(audio: np.ndarray, bin_samples: int = 48) -> np.ndarray:
    """Mean absolute amplitude per ``bin_samples`` (1 ms by default)."""
    mono = np.abs(audio.reshape(len(audio), -1)[:, 0].astype(np.float64))
    usable = len(mono) - len(mono) % bin_samples
    return mono[:usable].reshape(-1, bin_samples).mean(axis=1)


def best_lag_ms(audio: np.ndarray, reference: np.ndarray, max_lag_ms: int = 100) -> int:
    """The shift (ms) of ``audio`` against ``reference`` that best matches their envelopes."""
    a, r = envelope(audio), envelope(reference)
    n = min(len(a), len(r))
    a, r = a[:n] - a[:n].mean(), r[:n] - r[:n].mean()
    scores = {
        lag: float(np.dot(a[max(lag, 0):n + min(lag, 0)], r[max(-lag, 0):n - max(lag, 0)]))
        for lag in range(-max_lag_ms, max_lag_ms + 1)
    }
    return max(scores, key=scores.__getitem__)


def place(total: int, pieces: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
    """A silent mono track ``total`` samples long with each (position, audio) piece laid in."""
    out = np.zeros(total, dtype=np.int16)
    for pos, audio in pieces:
        audio = audio.reshape(-1)
        out[pos:pos + len(audio)] = audio[:max(0, total - pos)]
    return out


def random_pattern(frames: int, seed: int) -> list[bool]:
    """On/off runs of 3-12 frames: a talk-like envelope that cross-correlation can lock onto."""
    rng = random.Random(seed)
    out: list[bool] = []
    on = True
    while len(out) < frames:
        out.extend([on] * rng.randint(3, 12))
        on = not on
    return out[:frames]
