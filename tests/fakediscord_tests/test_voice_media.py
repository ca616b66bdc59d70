"""media.py and the synthetic voice: IP discovery over real UDP, silence control, audio."""

import asyncio
import socket

import numpy as np

from sinks.opus import OpusDecoder, OpusEncoder
from tests.fakediscord.audio import FRAME_SAMPLES, SpeechSynth
from tests.fakediscord.impair import ImpairedLink, Impairment
from tests.fakediscord.media import MediaServer, discovery_request, parse_discovery_reply
from tests.fakediscord.room import VoiceRoom
from tests.fakediscord.rtp import RtpPacket
from tests.fakediscord.speakers import SimulatedSpeaker


async def _recv(sock: socket.socket, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 2048), timeout)


def test_ip_discovery_and_media_come_from_the_connected_socket():
    async def main():
        found = []
        server = MediaServer(lambda ssrc, addr: found.append((ssrc, addr)))
        await server.start()
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        try:
            # Like discord.py: the client socket is connected, so only the server's socket reaches it.
            await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", server.port))
            client.send(discovery_request(0xABCDEF01))
            reply = await _recv(client)
            assert len(reply) == 74 and reply[1] == 2
            assert parse_discovery_reply(reply) == client.getsockname()
            assert found == [(0xABCDEF01, client.getsockname())]
            assert server.send(b"media", found[0][1])
            assert await _recv(client) == b"media"
            server.silence(30.0)
            assert not server.send(b"lost", found[0][1])
            assert server.stats.silenced == 1 and server.stats.sent == 1
        finally:
            client.close()
            server.stop()

    asyncio.run(main())


def test_speech_is_deterministic_distinct_and_encodable():
    a1 = np.concatenate([f for _, f in zip(range(150), SpeechSynth(110.0, 1).frames())])
    a2 = np.concatenate([f for _, f in zip(range(150), SpeechSynth(110.0, 1).frames())])
    b = np.concatenate([f for _, f in zip(range(150), SpeechSynth(220.0, 2).frames())])
    assert np.array_equal(a1, a2) and a1.dtype == np.int16 and len(a1) == 150 * FRAME_SAMPLES
    assert not np.array_equal(a1, b)
    rms = np.sqrt(np.mean(a1.astype(np.float64) ** 2))
    assert 500 < rms < 12_000
    # The pitch shows in the spectrum: the strongest low partials sit on multiples of f0.
    spectrum = np.abs(np.fft.rfft(a1.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(a1), 1 / 48_000)
    low = (freqs > 60) & (freqs < 1000)
    peak = freqs[low][np.argmax(spectrum[low])]
    assert abs(peak / 110.0 - round(peak / 110.0)) < 0.1
    enc, dec = OpusEncoder(2), OpusDecoder(2)
    out = np.concatenate([dec.decode(enc.encode(np.repeat(a1[i:i + 960, None], 2, 1)))[:, 0].copy()
                          for i in range(0, len(a1), 960)])
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) > rms / 3


def test_impairment_is_seeded_and_roughly_proportional():
    imp = Impairment(loss=0.1, reorder=0.05, duplicate=0.05, jitter=0.01, seed=3)
    links = [ImpairedLink(imp), ImpairedLink(imp)]
    runs = [[link.delays() for _ in range(2000)] for link in links]
    assert runs[0] == runs[1]
    lost = sum(1 for d in runs[0] if not d)
    dup = sum(1 for d in runs[0] if len(d) == 2)
    assert 120 < lost < 280 and 40 < dup < 160
    assert all(0 <= x < 0.12 for d in runs[0] for x in d)
    assert ImpairedLink(Impairment()).delays() == [0.0]


class _Rejoining:
    """A real client that is in the room but has not sent its DAVE key package yet
    (as the bot right after a voice reconnect); it keeps the media it is sent."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.media: list[RtpPacket] = []

    def send_json(self, op: int, data: dict) -> None:
        pass

    def send_binary(self, op: int, payload: bytes) -> None:
        pass

    def send_media(self, packet: RtpPacket) -> bool:
        self.media.append(packet)
        return True

    def send_datagram(self, clear: bytes, secret: bytes | None) -> bool:
        return True


def test_each_frame_names_who_can_open_it():
    async def main():
        room = VoiceRoom(1, 2, dave_version=1)
        room.add_speaker(10)
        room.add_speaker(11)
        alice = SimulatedSpeaker("alice", 10, pitch_hz=200.0, seed=1, ssrc=5)
        alice.tick(room, True, scheduled=0.0)
        assert alice.frames[-1].seq is not None and alice.frames[-1].readers == {10, 11}
        # Media still flows to a client whose key package is not committed yet, sealed for a
        # group it is not in: it cannot open what it is sent.
        client = _Rejoining(99)
        room.add_client(client)
        alice.tick(room, True, scheduled=0.02)
        assert client.media and client.media[-1].seq == alice.frames[-1].seq
        assert alice.frames[-1].readers == {10, 11}
        plain = VoiceRoom(1, 3, dave_version=0)
        plain.add_speaker(10)
        alice.tick(plain, True, scheduled=0.04)
        assert alice.frames[-1].seq is not None and alice.frames[-1].readers is None

    asyncio.run(main())
