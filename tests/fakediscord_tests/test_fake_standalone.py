"""`python -m tests.fakediscord`: one JSON line, a working Discord with the
default scenario's speakers in voice, clean exit 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import discord
import discord.gateway
import discord.http
import yarl

from tests.polling import wait_until

from .clientthread import ClientThread, trusting_connector

ROOT = Path(__file__).resolve().parents[2]


def test_standalone_serves_default_scenario_and_exits_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakediscord", "--no-dave"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    runner = None
    try:
        assert proc.stdout is not None
        cfg = json.loads(proc.stdout.readline())
        assert set(cfg) >= {"api_base", "gateway_url", "ca_file", "token", "guild_id",
                            "voice_channel_id", "text_channel_id", "members"}
        assert Path(cfg["ca_file"]).is_file()
        discord.http.Route.BASE = cfg["api_base"]
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg["gateway_url"])
        runner = ClientThread(lambda: discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1,
                                                     connector=trusting_connector(cfg["ca_file"])), cfg["token"])
        client = runner.start()
        speakers = {cfg["members"][name] for name in ("alice", "bob", "carol")}
        channel = client.get_channel(cfg["voice_channel_id"])
        wait_until(lambda: {m.id for m in channel.members} == speakers, what="the speakers in voice")
    finally:
        if runner is not None:
            runner.close()
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert cfg["token"] not in err
    assert not Path(cfg["ca_file"]).exists()  # the CA is removed on exit


def test_help_exits_zero() -> None:
    done = subprocess.run([sys.executable, "-m", "tests.fakediscord", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "--no-dave" in done.stdout and "--port" in done.stdout
