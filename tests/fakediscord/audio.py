"""Speech-like test audio: deterministic, distinct per speaker, 48 kHz int16 mono.

A voiced source (harmonics of a slowly wandering fundamental) is shaped by the
formants of a vowel that changes every syllable, under a syllable-rate
amplitude envelope with pauses between "words". It sounds like mumbled speech,
Opus treats it like speech, and each speaker's pitch keeps the tracks apart
when a test checks who said what.
"""

from __future__ import annotations

import logging
from typing import Final, Iterator

import numpy as np

__all__ = ["SAMPLE_RATE", "FRAME_SAMPLES", "SpeechSynth"]

_log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 48_000
FRAME_SAMPLES: Final = 960
#: (F1, F2, F3) in Hz of a few vowels (a, e, i, o, u, schwa).
_VOWELS: Final = np.array([
    (730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010),
    (570, 840, 2410), (300, 870, 2240), (500, 1500, 2500),
], dtype=np.float64)
_FORMANT_WIDTH: Final = np.array([90.0, 110.0, 170.0])
_FORMANT_GAIN: Final = np.array([1.0, 0.6, 0.3])
_MAX_HARMONIC_HZ: Final = 4_000.0
_PEAK: Final = 9_000.0


class SpeechSynth:
    """An endless, deterministic stream of speech-like audio for one speaker.

    The same (pitch, seed) always yields the same samples, so ground truth can
    be regenerated offline.
    """

    __slots__ = ("pitch_hz", "_rng", "_phase", "_pending")

    def __init__(self, pitch_hz: float, seed: int) -> None:
        if not 50.0 <= pitch_hz <= 400.0:
            raise ValueError(f"pitch {pitch_hz} Hz is outside the human voice range 50-400 Hz")
        self.pitch_hz = pitch_hz
        self._rng = np.random.default_rng(seed)
        self._phase = 0.0
        self._pending = np.zeros(0, dtype=np.int16)

    def _syllable(self) -> np.ndarray:
        """One syllable (voiced, enveloped) followed by an optional pause."""
        rng = self._rng
        n = int(SAMPLE_RATE * rng.uniform(0.12, 0.30))
        t = np.arange(n) / SAMPLE_RATE
        # Intonation: a gentle glide plus vibrato-like wobble around the speaker's pitch.
        glide = rng.uniform(-0.15, 0.15)
        f0 = self.pitch_hz * (1.0 + glide * t / t[-1]) * (1.0 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
        phase = self._phase + np.cumsum(2 * np.pi * f0 / SAMPLE_RATE)
        self._phase = float(phase[-1] % (2 * np.pi))
        formants = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.92, 1.08)
        signal = np.zeros(n)
        for k in range(1, int(_MAX_HARMONIC_HZ // self.pitch_hz) + 1):
            freq = k * self.pitch_hz
            # Spectral envelope: resonance peaks at the formants, glottal -12 dB/octave tilt.
            amp = np.sum(_FORMANT_GAIN / (1.0 + ((freq - formants) / _FORMANT_WIDTH) ** 2)) / k
            signal += amp * np.sin(k * phase)
        envelope = np.sin(np.pi * t / t[-1]).clip(0.0) ** 0.6
        signal *= envelope / max(np.max(np.abs(signal)), 1e-9) * _PEAK * rng.uniform(0.6, 1.0)
        pause = int(SAMPLE_RATE * rng.uniform(0.10, 0.35)) if rng.random() < 0.25 else 0
        return np.concatenate([signal, np.zeros(pause)]).astype(np.int16)

    def frame(self) -> np.ndarray:
        """The next 20 ms (960 samples) of mono int16 audio."""
        while len(self._pending) < FRAME_SAMPLES:
            self._pending = np.concatenate([self._pending, self._syllable()])
        out, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
        return out

    def frames(self) -> Iterator[np.ndarray]:
        """Endless 20 ms frames."""
        while True:
            yield self.frame()

