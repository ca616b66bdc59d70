"""An unmodified discord.py 2.7 client joins the fake's voice channel, completes DAVE,
and decrypts the simulated speakers' frames back to the exact ground-truth Opus."""

from __future__ import annotations

import struct
import threading
import time

import davey
import discord
import discord.gateway
import discord.http
import nacl.secret
import pytest
import yarl

from tests.fakediscord.rtp import SILENCE_FRAME
from tests.fakediscord.scenario import Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord_tests.clientthread import ClientThread, trusting_connector
from tests.polling import wait_until


@pytest.fixture(params=[True, False], ids=["dave", "plain"])
def fake(request):
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    with FakeDiscord(dave=request.param) as server:
        discord.http.Route.BASE = server.config["api_base"]
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.config["gateway_url"])
        try:
            yield server
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


def _unseal(key: bytes, datagram: bytes) -> tuple[int, int, bytes] | None:
    """(ssrc, seq, frame) of an xchacha rtpsize Opus packet; None for anything else."""
    if len(datagram) < 32 or datagram[0] >> 6 != 2 or datagram[1] != 0x78:
        return None
    first = datagram[0]
    _, _, seq, _, ssrc = struct.unpack_from(">BBHII", datagram)
    aad = 12 + 4 * (first & 0x0F)
    words = 0
    if first & 0x10:
        words = struct.unpack_from(">H", datagram, aad + 2)[0]
        aad += 4
    try:
        plain = nacl.secret.Aead(key).decrypt(datagram[aad:-4], datagram[:aad], datagram[-4:] + bytes(20))
    except Exception:
        return None
    plain = plain[4 * words:]
    if first & 0x20:
        plain = plain[:-plain[-1]]
    return ssrc, seq, plain


class Capture:
    """Socket listener: transport- and DAVE-decrypts on discord.py's reader thread, as a receiver would."""

    def __init__(self, vc: discord.VoiceClient, users_by_ssrc: dict[int, int]) -> None:
        self.vc, self.users_by_ssrc = vc, users_by_ssrc
        self.lock = threading.Lock()
        self.frames: dict[tuple[int, int], tuple[float, bytes]] = {}
        self.failures: list[tuple[int, int, float]] = []

    def __call__(self, datagram: bytes) -> None:
        opened = _unseal(bytes(self.vc.secret_key), datagram)
        if opened is None:
            return
        ssrc, seq, frame = opened
        session = self.vc._connection.dave_session
        now = time.monotonic()
        if self.vc._connection.dave_protocol_version and frame != SILENCE_FRAME:
            try:
                frame = session.decrypt(self.users_by_ssrc[ssrc], davey.MediaType.audio, frame)
            except Exception:
                with self.lock:
                    self.failures.append((ssrc, seq, now))
                return
        with self.lock:
            self.frames[(ssrc, seq)] = (now, frame)


def test_discordpy_decrypts_ground_truth_through_joins_and_leaves(fake):
    dave = fake.voice.dave_version > 0
    cfg = fake.config
    scenario = Scenario(speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.0, 5.5),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(0.0, 5.5),)),
        SpeakerSpec("carol", 160.0, talks=(Talk(0.0, 5.5),), join=2.0, leave=3.5),
    ), duration=6.0)
    runner = ScenarioRunner(fake.world, fake.voice, cfg["guild_id"], cfg["voice_channel_id"], scenario)
    client_thread = ClientThread(lambda: discord.Client(intents=discord.Intents.default(),
                                                        connector=trusting_connector(cfg["ca_file"])),
                                 cfg["token"])
    try:
        # In the channel first: the scenario's clock starts once alice and bob are in the
        # group with the client, so it plays the joins and leaves with the client there
        # however long connecting took (on a loaded machine, longer than the scenario).
        client = client_thread.start()
        channel = client.get_channel(cfg["voice_channel_id"])
        vc = client_thread.call(channel.connect())
        fake.run(runner.start())
        users = {s.ssrc: s.user_id for s in runner.speakers.values()}
        capture = Capture(vc, users)
        client_thread.call(_add_listener(vc, capture))
        if dave:
            wait_until(lambda: vc._connection.dave_session is not None and vc._connection.dave_session.ready,
                       timeout=15, what="the DAVE handshake")
        ready_at = time.monotonic()
        fake.run(runner.wait_done(), timeout=30)
        time.sleep(0.2)  # the last datagrams are still being read
        with capture.lock:
            frames, failures = dict(capture.frames), list(capture.failures)
        assert vc._connection.dave_protocol_version == (1 if dave else 0)

        for name in ("alice", "bob", "carol"):
            speaker = runner.speakers[name]
            truth = {(f.ssrc, f.seq): f for f in speaker.frames if f.seq is not None}
            mine = {k: v for k, v in frames.items() if k[0] == speaker.ssrc}
            assert len(mine) >= 25, f"{name}: only {len(mine)} frames decrypted"
            for key, (_, opus) in mine.items():
                assert opus == truth[key].opus, f"{name} seq {key[1]} differs from what was sent"
            # Everything sent after the client was in the group decrypts, carol's join and leave included.
            late = [k for k, f in truth.items() if f.mono_time > ready_at + 0.1]
            assert late and all(k in frames for k in late), f"{name}: frames sent after join were lost"
        carol_left = runner.started_mono + 3.5
        for name in ("alice", "bob"):
            after = [f for f in runner.speakers[name].frames if f.mono_time > carol_left + 0.5 and f.seq is not None]
            assert len(after) > 20 and all((f.ssrc, f.seq) in frames for f in after)
        assert not [f for f in failures if f[2] > ready_at + 0.1 + 0.5], failures
        client_thread.call(vc.disconnect())
    finally:
        fake.run(runner.stop())
        client_thread.close()


async def _add_listener(vc: discord.VoiceClient, capture: Capture) -> None:
    vc._connection.add_socket_listener(capture)
