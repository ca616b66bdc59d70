"""Test audio: distinct tones and bursts written with soundfile (no committed fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 48000


def tone(freq: float, seconds: float, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    """A sine tone as int16 samples."""
    t = np.arange(int(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def bursts(freq: float, seconds: float, spans: list[tuple[float, float]], amplitude: float = 0.5) -> np.ndarray:
    """Silence with a tone only inside each (start, end) span in seconds."""
    samples = tone(freq, seconds, amplitude)
    mask = np.zeros(len(samples), dtype=bool)
    for start, end in spans:
        mask[int(start * RATE) : int(end * RATE)] = True
    samples[~mask] = 0
    return samples


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write 16-bit PCM WAV."""
    sf.write(path, samples, rate, subtype="PCM_16", format="WAV")
    return path


def read_wav(path: Path) -> np.ndarray:
    """Read as int16 (frames,) for mono."""
    data, _ = sf.read(path, dtype="int16")
    return data
