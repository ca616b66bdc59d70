"""voice.py + scenario.py over real TLS and UDP, driven by a minimal hand-written client.

(The discord.py end-to-end tests are in test_voice_discordpy.py.) This client
speaks the voice gateway by the book, so it checks the server's messages one by
one, then decrypts the media and compares it with the scenario's ground truth.
"""

import asyncio
import json
import socket
import struct

import aiohttp
import nacl.secret
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakediscord.impair import Impairment
from tests.fakediscord.media import discovery_request, parse_discovery_reply
from tests.fakediscord.rtp import MODE_AES_GCM, MODE_XCHACHA, SILENCE_FRAME
from tests.fakediscord.scenario import Event, Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.state import CHANNEL_VOICE, World
from tests.fakediscord.tlsca import TestCA
from tests.fakediscord.voice import CLOSE_DAVE_REQUIRED, VoiceServer


@pytest.fixture(scope="module")
def ca():
    ca = TestCA()
    yield ca
    ca.close()


def _world():
    world = World()
    bot = world.add_user("recorder", bot=True)
    guild = world.add_guild("g", bot)
    channel = world.add_channel(guild, "voice", CHANNEL_VOICE)
    return world, bot, guild, channel


class RawClient:
    """A by-the-book voice client: websocket + connected UDP socket."""

    def __init__(self, server: VoiceServer, ca: TestCA, guild_id: int, user_id: int) -> None:
        self.server, self.ca, self.guild_id, self.user_id = server, ca, guild_id, user_id
        self.json: list[dict] = []
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()

    async def connect(self, mode: str, max_dave: int = 0) -> dict:
        self.server.authorize(guild_id=self.guild_id, channel_id=self.channel_id, user_id=self.user_id,
                              session_id="sess", token="tok")
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ca.client_context()))
        self.ws = await self.http.ws_connect(f"wss://{self.server.endpoint}/?v=8", compress=15)
        hello = await self.ws.receive_json()
        assert hello["op"] == 8 and hello["d"]["heartbeat_interval"] > 0
        await self.ws.send_json({"op": 0, "d": {"server_id": str(self.guild_id), "user_id": str(self.user_id),
                                                "session_id": "sess", "token": "tok",
                                                "max_dave_protocol_version": max_dave}})
        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return {"closed": self.ws.close_code}
        ready = json.loads(msg.data)
        assert ready["op"] == 2 and ready["d"]["ip"] == "127.0.0.1" and "seq" in ready
        assert set(ready["d"]["modes"]) == {MODE_AES_GCM, MODE_XCHACHA}
        self.ssrc = ready["d"]["ssrc"]
        loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, (ready["d"]["ip"], ready["d"]["port"]))
        self.sock.send(discovery_request(self.ssrc))
        ip, port = parse_discovery_reply(await asyncio.wait_for(loop.sock_recv(self.sock, 2048), 5))
        assert (ip, port) == self.sock.getsockname()
        loop.add_reader(self.sock, lambda: self.datagrams.put_nowait(self.sock.recv(2048)))
        await self.ws.send_json({"op": 1, "d": {"protocol": "udp",
                                                "data": {"address": ip, "port": port, "mode": mode}}})
        await self.ws.send_json({"op": 3, "d": {"t": 1234, "seq_ack": ready["seq"]}})
        self.reader = asyncio.create_task(self._read())
        desc = await self.wait_op(4)
        self.mode, self.key = desc["mode"], bytes(desc["secret_key"])
        assert desc["dave_protocol_version"] == 0 and len(self.key) == 32
        assert (await self.wait_op(6)) == {"t": 1234}
        return desc

    async def _read(self):
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.json.append(json.loads(msg.data))

    async def wait_op(self, op: int, timeout: float = 10.0, pred=lambda d: True) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for m in self.json:
                if m["op"] == op and pred(m["d"]):
                    return m["d"]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no op {op} within {timeout}s; got {[m['op'] for m in self.json]}")

    def open(self, datagram: bytes) -> tuple[int, int, int, bytes] | None:
        """(ssrc, seq, timestamp, frame) of an RTP packet, None for anything else."""
        if len(datagram) < 12 + 20 or datagram[0] >> 6 != 2 or datagram[1] != 0x78:
            return None
        first = datagram[0]
        _, _, seq, ts, ssrc = struct.unpack_from(">BBHII", datagram)
        aad = 12 + 4 * (first & 0x0F)
        words = 0
        if first & 0x10:
            words = struct.unpack_from(">H", datagram, aad + 2)[0]
            aad += 4
        counter = datagram[-4:]
        try:
            if self.mode == MODE_AES_GCM:
                plain = AESGCM(self.key).decrypt(counter + bytes(8), datagram[aad:-4], datagram[:aad])
            else:
                plain = nacl.secret.Aead(self.key).decrypt(datagram[aad:-4], datagram[:aad], counter + bytes(20))
        except Exception:
            return None
        plain = plain[4 * words:]
        if first & 0x20:
            plain = plain[:-plain[-1]]
        return ssrc, seq, ts, plain

    async def close(self):
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        await self.ws.close()
        self.reader.cancel()
        await self.http.close()


@pytest.mark.parametrize("mode", [MODE_XCHACHA, MODE_AES_GCM])
def test_client_receives_exactly_the_ground_truth(ca, mode):
    """Two speakers (one with loss/dup/reorder) plus garbage and RTCP; every
    decrypted Opus frame must be one the ground truth says reached the wire."""

    async def main():
        world, bot, guild, channel = _world()
        server = VoiceServer(world, ca.server_context(), dave=False)
        await server.start()
        client = RawClient(server, ca, guild.id, bot.id)
        client.channel_id = channel.id
        scenario = Scenario(speakers=(
            SpeakerSpec("alice", 200.0, talks=(Talk(0.0, 0.6),)),
            SpeakerSpec("bob", 120.0, talks=(Talk(0.2, 0.8, speaking_delay=0.3),),
                        impairment=Impairment(loss=0.1, reorder=0.1, duplicate=0.1, jitter=0.005, seed=5)),
        ), duration=1.2, events=(Event(0.3, "garbage", count=20), Event(0.4, "rtcp", count=2)))
        runner = ScenarioRunner(world, server, guild.id, channel.id, scenario)
        try:
            await client.connect(mode)
            await runner.start()
            await runner.wait_done()
            await asyncio.sleep(0.2)  # delayed (reordered) packets are still in flight
            speaking = {d["user_id"]: d["ssrc"] for d in
                        (m["d"] for m in client.json if m["op"] == 5)}
            alice, bob = runner.speakers["alice"], runner.speakers["bob"]
            assert speaking == {str(alice.user_id): alice.ssrc, str(bob.user_id): bob.ssrc}
            connects = {u for m in client.json if m["op"] == 11 for u in m["d"]["user_ids"]}
            assert connects == {str(alice.user_id), str(bob.user_id)}
            got: dict[int, list] = {alice.ssrc: [], bob.ssrc: []}
            junk = 0
            while not client.datagrams.empty():
                opened = client.open(client.datagrams.get_nowait())
                if opened is None:
                    junk += 1
                    continue
                ssrc, seq, ts, frame = opened
                got[ssrc].append((seq, ts, frame))
            assert junk >= 20 + 2 * 2  # garbage and RTCP never decrypt as Opus RTP
            for speaker in (alice, bob):
                expected = []
                for f in speaker.frames:
                    copies = {"sent": 1, "delayed": 1, "duplicated": 2}.get(f.fate, 0)
                    expected += [(f.seq, f.timestamp, f.opus)] * copies
                assert sorted(got[speaker.ssrc]) == sorted(expected)
                assert [f.opus for f in speaker.frames[-5:]] == [SILENCE_FRAME] * 5
                stamps = [f.timestamp for f in speaker.frames]
                assert all((b - a) % 2**32 == 960 for a, b in zip(stamps, stamps[1:]))
            assert len(alice.frames) == 30 + 5 and all(f.fate == "sent" for f in alice.frames)
            fates = {f.fate for f in bob.frames}
            assert "dropped" in fates and "duplicated" in fates
            # Bob's first packets left before SPEAKING named his SSRC.
            assert bob.frames[0].fate != "held"
        finally:
            await runner.stop()
            await client.close()
            await server.stop()

    asyncio.run(main())


def test_identify_is_checked(ca):
    async def main():
        world, bot, guild, channel = _world()
        server = VoiceServer(world, ca.server_context(), dave=False)
        await server.start()
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca.client_context())) as http:
                ws = await http.ws_connect(f"wss://{server.endpoint}/?v=8")
                await ws.receive_json()
                await ws.send_json({"op": 0, "d": {"server_id": str(guild.id), "user_id": str(bot.id),
                                                   "session_id": "x", "token": "wrong"}})
                assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4004
        finally:
            await server.stop()

    asyncio.run(main())


def test_dave_server_refuses_clients_without_dave(ca):
    async def main():
        world, bot, guild, channel = _world()
        server = VoiceServer(world, ca.server_context(), dave=True)
        await server.start()
        client = RawClient(server, ca, guild.id, bot.id)
        client.channel_id = channel.id
        try:
            assert await client.connect(MODE_XCHACHA, max_dave=0) == {"closed": CLOSE_DAVE_REQUIRED}
        finally:
            await client.http.close()
            await server.stop()

    asyncio.run(main())


def test_force_close_and_silence(ca):
    async def main():
        world, bot, guild, channel = _world()
        server = VoiceServer(world, ca.server_context(), dave=False)
        await server.start()
        client = RawClient(server, ca, guild.id, bot.id)
        client.channel_id = channel.id
        scenario = Scenario(speakers=(SpeakerSpec("alice", 200.0, talks=(Talk(0.0, 0.4),)),),
                            duration=0.6, events=(Event(0.0, "silence", seconds=10.0),))
        runner = ScenarioRunner(world, server, guild.id, channel.id, scenario)
        try:
            await client.connect(MODE_XCHACHA)
            await runner.start()
            await runner.wait_done()
            assert client.datagrams.empty() and server.media.stats.silenced >= 20
            await server.force_close(bot.id, 4006)
            await asyncio.wait_for(client.reader, 5)
            assert client.ws.close_code == 4006
        finally:
            await runner.stop()
            await client.close()
            await server.stop()

    asyncio.run(main())
