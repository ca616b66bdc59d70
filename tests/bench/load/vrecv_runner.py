"""discord-ext-voice-recv recording one WAV per user, for the load benchmark's comparison.

Runs inside the benchmark's own venv (discord.py 2.7.1 + discord-ext-voice-recv
0.5.2), never the project's. Configured by one JSON argument: api_base,
gateway_url, ca_file, token, channels (voice channel ids), out (a directory).
It joins every channel with ``voice_recv.VoiceRecvClient`` and listens with a
sink that keeps a ``wave`` writer per user, as the library's README and
WaveSink do (DAVE off: the library cannot decrypt DAVE). It prints one JSON
line when every channel is joined, and answers stdin lines: ``stats`` prints
the counters as one JSON line (``buffered``: packets its jitter buffers
still hold), ``stop`` reads them, stops, closes the files, prints the
final counters and exits.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import wave
from pathlib import Path
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import voice_recv
from discord.ext.voice_recv.rtp import RTPPacket
from discord.gateway import DiscordWebSocket


class WavPerUser(voice_recv.AudioSink):
    """One ``wave`` file per user; counts the real packets (not the library's fill-ins)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.files: dict[int, wave.Wave_write] = {}
        self.packets = 0
        self.filled = 0

    def wants_opus(self) -> bool:
        return False

    def write(self, user: Any, data: voice_recv.VoiceData) -> None:
        if isinstance(data.packet, RTPPacket):
            self.packets += 1
        else:
            self.filled += 1
        if user is None:
            return
        out = self.files.get(user.id)
        if out is None:
            out = self.files[user.id] = wave.open(str(self.directory / f"{user.id}.wav"), "wb")
            out.setnchannels(voice_recv.WaveSink.CHANNELS)
            out.setsampwidth(voice_recv.WaveSink.SAMPLE_WIDTH)
            out.setframerate(voice_recv.WaveSink.SAMPLING_RATE)
        out.writeframes(data.pcm)

    def cleanup(self) -> None:
        for out in self.files.values():
            out.close()


def _say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def main(config: dict[str, Any]) -> None:
    discord.http.Route.BASE = config["api_base"]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config["gateway_url"])
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=config["ca_file"])
    intents = discord.Intents.default()
    client = discord.Client(intents=intents, connector=aiohttp.TCPConnector(ssl=context))
    sinks: list[WavPerUser] = []
    voices: list[voice_recv.VoiceRecvClient] = []
    joined = asyncio.Event()

    @client.event
    async def on_ready() -> None:
        for n, channel_id in enumerate(config["channels"]):
            channel = client.get_channel(int(channel_id))
            voice = await channel.connect(cls=voice_recv.VoiceRecvClient, self_deaf=False)
            directory = Path(config["out"]) / str(n)
            directory.mkdir(parents=True, exist_ok=True)
            sink = WavPerUser(directory)
            voice.listen(sink)
            sinks.append(sink)
            voices.append(voice)
        joined.set()

    def buffered() -> int:
        # Its jitter buffer keeps one packet per stream until the next arrives
        # (prefsize 1): received, not lost, so it is counted apart.
        total = 0
        for voice in voices:
            router = voice._reader.packet_router
            with router._lock:
                total += sum(len(decoder._buffer) for decoder in router.decoders.values())
        return total

    def counters() -> dict[str, int]:
        return {"packets": sum(s.packets for s in sinks), "filled": sum(s.filled for s in sinks),
                "users": sum(len(s.files) for s in sinks), "buffered": buffered()}

    async with client:
        starter = asyncio.create_task(client.start(config["token"]))
        await joined.wait()
        _say(ready=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "stats":
                _say(**counters())
            elif line in ("stop", ""):
                final = counters()
                for voice in voices:
                    voice.stop_listening()
                    await voice.disconnect(force=True)
                _say(final=True, **final)
                break
        await client.close()
        starter.cancel()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
