"""Per-datagram cost of the voice receive path on the socket thread.

Run: ``python -m tests.bench.receive_bench``. Prints one row per part of the
path and the whole ``VoiceReceiver.on_datagram`` with DAVE off and on (a real
davey group, frames sealed by a simulated member), writing into a real
``sinks.AudioSink``. Best of several repeats, in microseconds per datagram.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.voice.dave import DaveDecryptor
from bot.voice.receiver import VoiceReceiver
from bot.voice.rtp import RtpHeader, classify, strip_payload
from bot.voice.ssrc_map import SsrcMap
from bot.voice.transport import create_decryptor
from sinks import AudioSink, VoicePacket
from sinks.opus import OpusEncoder
from tests.voice.dave_group import settled_group
from tests.voice.packets import AES_GCM, XCHACHA, voice_datagram

N = 20_000
REPEATS = 5
KEY = bytes(range(32))
SENDER, BOT, SSRC = 111, 222, 0x5EED


@dataclass
class _ConnectionState:
    dave_session: Any
    dave_protocol_version: int


def _per_call_us(body: Callable[[int], object], n: int = N) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for i in range(n):
            body(i)
        best = min(best, (time.perf_counter_ns() - start) / n / 1000)
    return best


def _opus_frame() -> bytes:
    t = np.arange(960) / 48000
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16).reshape(960, 1)
    return OpusEncoder(1, 64_000, False).encode(pcm)


def main() -> None:
    frame = _opus_frame()
    members = settled_group([SENDER, BOT])
    # davey refuses a nonce twice, so every DAVE call gets a frame of its own
    dave_frames = [members[SENDER].encrypt_opus(frame) for _ in range(2 * N * REPEATS)]
    plain_dgram = voice_datagram(XCHACHA, KEY, frame, sequence=1, timestamp=960, ssrc=SSRC, extension_body=b"\x10\x00\x00\x01")
    gcm_dgram = voice_datagram(AES_GCM, KEY, frame, sequence=1, timestamp=960, ssrc=SSRC, extension_body=b"\x10\x00\x00\x01")
    header = RtpHeader.parse(plain_dgram)
    assert header is not None
    xchacha = create_decryptor(XCHACHA, KEY)
    gcm = create_decryptor(AES_GCM, KEY)
    plaintext = xchacha.decrypt(plain_dgram, header)
    ssrc_map: SsrcMap[Any] = SsrcMap()
    ssrc_map.bind(SSRC, SENDER)
    dave = DaveDecryptor(_ConnectionState(members[BOT].session, 1))

    rows: list[tuple[str, float]] = []
    rows.append(("classify + RtpHeader.parse", _per_call_us(lambda i: (classify(plain_dgram), RtpHeader.parse(plain_dgram)))))
    rows.append(("transport decrypt, XChaCha20 (PyNaCl)", _per_call_us(lambda i: xchacha.decrypt(plain_dgram, header))))
    rows.append(("transport decrypt, AES-256-GCM (cryptography)", _per_call_us(lambda i: gcm.decrypt(gcm_dgram, header))))
    rows.append(("strip extension body + padding", _per_call_us(lambda i: strip_payload(header, plaintext))))
    rows.append(("SSRC -> user lookup", _per_call_us(lambda i: ssrc_map.lookup(SSRC))))
    fresh = iter(dave_frames)
    rows.append(("DAVE decrypt (davey, real group)", _per_call_us(lambda i: dave.decrypt(SENDER, next(fresh)))))
    # The receiver drops network copies by sequence number, so each datagram has its own.
    plain_dgrams = iter(
        [voice_datagram(XCHACHA, KEY, frame, sequence=i & 0xFFFF, timestamp=960 * i & 0xFFFFFFFF, ssrc=SSRC)
         for i in range(N * REPEATS)]
    )
    dave_dgrams = iter(
        [voice_datagram(XCHACHA, KEY, f, sequence=i & 0xFFFF, timestamp=960 * i & 0xFFFFFFFF, ssrc=SSRC)
         for i, f in enumerate(dave_frames[N * REPEATS :])]
    )
    with tempfile.TemporaryDirectory() as tmp:
        sink = AudioSink(tmp, queue_size=10 * N * REPEATS)
        # one user id per call: the worker decodes, this measures the enqueue only
        rows.append(("VoicePacket + AudioSink.write", _per_call_us(lambda i: sink.write(10_000 + i % 50, VoicePacket(1, 960, frame, 0.0, SSRC)))))

        def pipeline(next_dgram: Callable[[], bytes], state: _ConnectionState) -> float:
            receiver = VoiceReceiver(sink, state, ssrc_map)
            receiver.set_transport(XCHACHA, KEY)
            cost = _per_call_us(lambda i: receiver.on_datagram(next_dgram()))
            stats = receiver.stats()
            assert stats.accepted + stats.sink_full == stats.datagrams, stats
            return cost

        rows.append(("on_datagram, whole path, DAVE off", pipeline(plain_dgrams.__next__, _ConnectionState(None, 0))))
        rows.append(("on_datagram, whole path, DAVE on", pipeline(dave_dgrams.__next__, _ConnectionState(members[BOT].session, 1))))
        sink.close()

    width = max(len(name) for name, _ in rows)
    print(f"receive path, {N} datagrams x best of {REPEATS}, Opus frame {len(frame)} B")
    print(f"{'part':<{width}}  us/datagram")
    for name, cost in rows:
        print(f"{name:<{width}}  {cost:10.2f}")
    whole = rows[-1][1]
    print(f"speakers per core at 50 packets/s (DAVE on, this path only): {1e6 / (whole * 50):.0f}")


if __name__ == "__main__":
    main()
