"""The ctypes libopus binding: real encode/decode round trips."""

import numpy as np
import pytest

from sinks.opus import FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusError, packet_samples


def _tone(freq: float, frames: int, channels: int) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / 48_000
    mono = (np.sin(2 * np.pi * freq * t) * 10_000).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1)


@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip_keeps_the_tone(channels: int) -> None:
    encoder, decoder = OpusEncoder(channels), OpusDecoder(channels)
    signal = _tone(440.0, 25, channels)
    decoded = []
    for i in range(25):
        packet = encoder.encode(signal[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
        assert packet_samples(packet) == FRAME_SAMPLES
        decoded.append(decoder.decode(packet).copy())
    out = np.concatenate(decoded)[:, 0].astype(np.float64)
    # Opus has a 312-sample algorithmic delay; after it the tone must dominate at 440 Hz.
    spectrum = np.abs(np.fft.rfft(out[2000:]))
    peak_hz = np.argmax(spectrum) * 48_000 / (len(out) - 2000)
    assert abs(peak_hz - 440.0) < 10.0
    assert np.sqrt(np.mean(out[2000:] ** 2)) > 5_000


def test_concealment_returns_a_frame_and_corrupt_packets_raise() -> None:
    decoder = OpusDecoder(2)
    assert decoder.conceal().shape == (FRAME_SAMPLES, 2)
    assert decoder.decode(b"\xf8\xff\xfe").shape == (FRAME_SAMPLES, 2)
    with pytest.raises(OpusError, match="corrupted"):
        decoder.decode(b"\xff\xff\xff\xff\x00")
    with pytest.raises(OpusError):
        packet_samples(b"")
