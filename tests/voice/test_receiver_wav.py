"""Real Opus frames -> encrypted datagrams -> VoiceReceiver -> the real AudioSink -> WAV files.

The WAVs must hold exactly what an offline decode of the same frames gives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from bot.voice.receiver import VoiceReceiver
from bot.voice.ssrc_map import SsrcMap
from bot.voice.stats import ReceiveStats
from sinks import AudioSink
from sinks.opus import OpusDecoder, OpusEncoder

from .dave_group import settled_group
from .packets import XCHACHA, voice_datagram

FRAMES = 50  # one second per speaker


@dataclass
class _ConnectionState:
    dave_session: Any
    dave_protocol_version: int


class _SteppedClock:
    """Arrival clock that the test advances by 20 ms per frame."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tone_frames(freq: float) -> list[bytes]:
    encoder = OpusEncoder(1, 64_000, False)
    t = np.arange(FRAMES * 960) / 48_000
    pcm = (np.sin(2 * np.pi * freq * t) * 9000).astype(np.int16).reshape(-1, 1)
    return [encoder.encode(pcm[i * 960 : (i + 1) * 960]) for i in range(FRAMES)]


def _offline(frames: list[bytes]) -> np.ndarray:
    decoder = OpusDecoder(1)
    return np.concatenate([decoder.decode(f).copy() for f in frames])[:, 0]


def _record(tmp_path: Path, dave: bool) -> tuple[dict[int, list[bytes]], ReceiveStats, Path]:
    users = {111: 0x1001, 222: 0x2002}
    members = settled_group([111, 222, 999]) if dave else {}
    state = _ConnectionState(members[999].session, 1) if dave else _ConnectionState(None, 0)
    frames = {111: _tone_frames(330.0), 222: _tone_frames(550.0)}
    key = os.urandom(32)
    clock = _SteppedClock()
    sink = AudioSink(tmp_path, clock=clock)
    ssrc_map: SsrcMap[Any] = SsrcMap()
    receiver = VoiceReceiver(sink, state, ssrc_map, clock=clock)
    receiver.set_transport(XCHACHA, key)
    for i in range(FRAMES):
        if i == 5:
            ssrc_map.bind(users[111], 111)  # SPEAKING late for 111: its first 5 frames are held
        if i == 0:
            ssrc_map.bind(users[222], 222)
        for user_id, ssrc in users.items():
            frame = frames[user_id][i]
            payload = members[user_id].encrypt_opus(frame) if dave else frame
            receiver.on_datagram(
                voice_datagram(XCHACHA, key, payload, sequence=(60000 + i) & 0xFFFF, timestamp=(2**32 - 4800 + 960 * i) % 2**32,
                               ssrc=ssrc, extension_body=b"\x10\x00\x00\x01", padding=i % 3)
            )
        clock.now += 0.020
    stats = receiver.stats()
    sink.close()
    return frames, stats, tmp_path


def _assert_wavs_match(frames: dict[int, list[bytes]], stats: ReceiveStats, directory: Path) -> None:
    assert stats.accepted == stats.datagrams == 2 * FRAMES
    for user_id, user_frames in frames.items():
        audio, rate = soundfile.read(directory / f"{user_id}.wav", dtype="int16")
        assert rate == 48_000
        expected = _offline(user_frames)
        assert len(audio) >= len(expected)
        np.testing.assert_array_equal(audio[: len(expected)], expected)


def test_wavs_match_offline_decode(tmp_path: Path) -> None:
    _assert_wavs_match(*_record(tmp_path, dave=False))


def test_wavs_match_offline_decode_through_dave(tmp_path: Path) -> None:
    _assert_wavs_match(*_record(tmp_path, dave=True))
