"""The bot recording while it holds more than 1024 descriptors (a high soft RLIMIT_NOFILE,
many downloads open): its voice socket's descriptor is past select()'s FD_SETSIZE."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import check_tracks, manifest, origin_guess, play, read_wav, recording_id, talk_samples
from .conftest import BotProcess

_LAUNCHER = Path(__file__).with_name("launchers") / "many_fds.py"
#: select()'s limit: descriptors from here on cannot be in an fd_set.
FD_SETSIZE = 1024

TWO = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.4, 1.2),)),
        SpeakerSpec("bob", 110.0, talks=(Talk(1.3, 2.1),)),
    ),
    duration=2.4,
)


@pytest.fixture
def bot_launcher() -> list[str]:
    """``python -m bot`` with 1100 descriptors held open first."""
    return [sys.executable, str(_LAUNCHER)]


def _socket_fds(pid: int) -> list[int]:
    """The descriptor numbers of process `pid`'s sockets."""
    found = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if stat.S_ISSOCK(os.stat(f"/proc/{pid}/fd/{name}").st_mode):
                found.append(int(name))
        except FileNotFoundError:
            continue
    return found


def test_voice_socket_past_fd_setsize_is_recorded(fake: FakeDiscord,
                                                  start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    started = bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]})
    assert "Recording" in started.content, started.content
    rid = recording_id(started)
    sockets = _socket_fds(bot.proc.pid)
    assert sockets and min(sockets) >= FD_SETSIZE, f"the bot's sockets are not past FD_SETSIZE: {sorted(sockets)}"
    runner = play(fake, TWO)
    reply = bot.ask("record", "stop")
    assert "automatically" not in reply.content, reply.content

    members = fake.config["members"]
    folder = bot.recordings_dir / rid
    meta = manifest(folder)
    assert meta["status"] == "finished"
    tracks = {}
    for name in ("alice", "bob"):
        path = folder / f"{name}-{members[name]}.wav"
        assert path.exists(), f"{name}: no track; the recording heard nothing ({sorted(os.listdir(folder))})"
        tracks[name] = read_wav(path)
    matched = check_tracks(tracks, runner, origin_guess(runner, meta["started_at"]))
    for name, samples in matched.items():
        assert samples >= 0.9 * talk_samples(runner, name), f"{name}: only {samples} samples matched"
    assert "Traceback" not in bot.log()
