"""Fixtures: a loopback Discord (DAVE on) and the REAL bot as a subprocess aimed at it.

The bot is configured only through its environment, exactly as an operator
would run it; nothing of the bot's code is imported or replaced here. Its
stdout and stderr go to a log file under the test's tmp_path, which is
attached to the report when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakediscord.messages import InteractionRecord, Message
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_TEXT, User

#: How long the bot may take to come up (TLS, gateway, command sync) on a loaded box.
START_TIMEOUT = 60.0
#: How long SIGTERM may take (it finalizes open recordings first).
STOP_TIMEOUT = 30.0
#: How long a slash command may take to answer (joining voice includes the DAVE handshake).
REPLY_TIMEOUT = 60.0

#: What the bot logs in on_ready, once every guild is in its cache (as text, or as JSON: LOG_FORMAT=json).
_READY_LINES = (" connected as ", '"message": "connected as ')
_REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class OtherGuild:
    """A second guild the bot is a member of (for guild-scoping checks)."""

    guild_id: int
    text_channel_id: int
    owner_id: int


@dataclass
class BotProcess:
    """One run of ``python -m bot`` against the fake."""

    fake: FakeDiscord
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    http_base: str
    #: Set once the test stopped the process itself (SIGTERM checked, or SIGKILL on purpose).
    done: bool = False

    @property
    def recordings_dir(self) -> Path:
        """RECORDINGS_DIR of this run."""
        return Path(self.env["RECORDINGS_DIR"])

    def log(self) -> str:
        """Everything the bot printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def command(self, name: str, subcommand: str | None = None, options: dict[str, Any] | None = None, *,
                user: str = "owner", **kwargs: Any) -> InteractionRecord:
        """Invoke ``/name subcommand`` as the default world's member called `user`."""
        uid = self.fake.config["members"][user]
        return self.fake.invoke_command(name, subcommand, options, user_id=uid, **kwargs)

    def ask(self, name: str, subcommand: str | None = None, options: dict[str, Any] | None = None, *,
            user: str = "owner", timeout: float = REPLY_TIMEOUT, **kwargs: Any) -> Message:
        """Invoke a command and return its first visible answer."""
        return self.command(name, subcommand, options, user=user, **kwargs).wait_message(timeout=timeout)

    def terminate(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """SIGTERM, as systemd or docker stop would (or ``signum``); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the bot did not exit within {STOP_TIMEOUT:g} s of {signum.name}") from None
        finally:
            self.done = True
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to finalize anything."""
        self.proc.kill()
        self.proc.wait()
        self.done = True


def _add_other_guild(fake: FakeDiscord) -> OtherGuild:
    """A second guild with its own text channel, the bot and the default owner in it."""
    def build() -> OtherGuild:
        world = fake.world
        owner = world.users[fake.config["members"]["owner"]]
        guild = world.add_guild("Other Guild", owner)
        text = world.add_channel(guild, "other-general", CHANNEL_TEXT)
        bot_user: User = world.users[fake.config["bot_user_id"]]
        world.add_member(guild, bot_user)
        return OtherGuild(guild.id, text.id, owner.id)
    return fake.run(build)


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    """The loopback Discord with DAVE on."""
    with FakeDiscord(dave=True) as fake:
        yield fake


@pytest.fixture
def other_guild(fake: FakeDiscord) -> OtherGuild:
    """A second guild; request it before the bot starts so the bot's GUILD_CREATE includes it."""
    return _add_other_guild(fake)


def bot_env(fake: FakeDiscord, recordings: Path, port: int, **overrides: str) -> dict[str, str]:
    """The bot's whole configuration: the fake's endpoints plus per-test `overrides`."""
    config = fake.config
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "HTTP_", "PUBLIC_URL"))}
    env.update(
        DISCORD_TOKEN=config["token"], DISCORD_API_BASE=config["api_base"],
        DISCORD_GATEWAY_URL=config["gateway_url"], DISCORD_CA_FILE=config["ca_file"],
        RECORDINGS_DIR=str(recordings), HTTP_HOST="127.0.0.1", HTTP_PORT=str(port),
        PUBLIC_URL=f"http://127.0.0.1:{port}", RECORDER_ROLE="Recorder",
        PYTHONPATH=str(_REPO), PYTHONUNBUFFERED="1",
        # The fake sends every guild right after READY; discord.py's 2 s wait for more
        # would be a third of many tests' time.
        GUILD_READY_SECONDS="0.5",
    )
    env.update(overrides)
    return env


def bot_argv(launcher: list[str] | None = None) -> list[str]:
    """The command line of the bot; ``--env-file`` points at nothing so only the environment counts.

    `launcher` replaces ``python -m bot`` (see the ``bot_launcher`` fixture).
    """
    return [*(launcher or [sys.executable, "-m", "bot"]), "--env-file", os.devnull]


@pytest.fixture
def bot_launcher() -> list[str] | None:
    """What starts the bot in place of ``python -m bot``; None for that. A test module
    overrides this fixture to set up the process first (e.g. resource limits): the
    launcher must end by running the module ``bot`` as ``__main__`` with its arguments."""
    return None


@pytest.fixture
def start_bot(fake: FakeDiscord, tmp_path: Path, request: pytest.FixtureRequest,
              bot_launcher: list[str] | None) -> Iterator[Callable[..., BotProcess]]:
    """Factory: ``start_bot(*extra_args, **env_overrides)`` runs the bot and waits until its commands are
    registered.

    Every process started is stopped at teardown with SIGTERM, and must exit 0
    (unless the test already stopped or killed it).
    """
    started: list[BotProcess] = []
    recordings = tmp_path / "recordings"
    request.node.bot_logs = []  # read by pytest_runtest_makereport below

    def start(*args: str, **overrides: str) -> BotProcess:
        port = free_port()
        env = bot_env(fake, recordings, port, **overrides)
        log_path = tmp_path / f"bot-{len(started) + 1}.log"
        request.node.bot_logs.append(log_path)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*bot_argv(bot_launcher), *args], env=env, cwd=tmp_path, stdout=log,
                                    stderr=subprocess.STDOUT)
        bot = BotProcess(fake, proc, log_path, env, f"http://127.0.0.1:{port}")
        started.append(bot)
        _wait_ready(fake, bot)
        _wait_http(bot)
        return bot

    yield start
    failures = []
    for bot in started:
        if not bot.done:
            code = bot.terminate()
            if code != 0:
                failures.append(f"{bot.log_path.name}: exit code {code} after SIGTERM")
    assert not failures, "; ".join(failures)


def _wait_ready(fake: FakeDiscord, bot: BotProcess) -> None:
    """Until the commands are registered and this process's on_ready is logged (a restarted
    bot finds its predecessor's commands registered already, so the log line is what tells).

    Polls rather than using ``fake.wait_for``: asking the fake for its commands
    hops onto the fake's loop, which must not happen under the fake's lock.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert bot.proc.poll() is None, f"the bot exited with code {bot.proc.returncode} during start-up"
        if is_ready(bot) and {"record", "recordings"} <= {
                c["name"] for c in fake.registered_commands(None)}:
            return
        assert time.monotonic() < deadline, f"the bot was not ready within {START_TIMEOUT:g} s"
        time.sleep(0.05)


def is_ready(bot: BotProcess) -> bool:
    """Whether the bot logged its on_ready line."""
    log = bot.log()
    return any(line in log for line in _READY_LINES)


def _wait_http(bot: BotProcess) -> None:
    """The download server starts before the commands sync; make sure it accepts connections."""
    host, port = "127.0.0.1", int(bot.env["HTTP_PORT"])
    with socket.create_connection((host, port), timeout=10):
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the bot's log to the report of a failed test (any phase)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for path in getattr(item, "bot_logs", []):
            if path.exists():
                report.sections.append((f"bot log {path.name}", path.read_text(errors="replace")[-20000:]))
