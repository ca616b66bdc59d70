"""The installed discord.py still has every private piece bot/voice/discordpy.py relies on.

A discord.py upgrade that renames or drops one fails here, naming the piece
and why the fence needs it, instead of as a hung reconnect or a deaf
recording somewhere in the end-to-end tests.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import SocketReader, VoiceConnectionState

import bot.voice
from bot.voice.discordpy import RELIED_ON, WRITTEN_AGAINST, Kind, Reliance


def _label(piece: Reliance) -> str:
    owner = piece.owner
    qualified = owner.__name__ if isinstance(owner, ModuleType) else f"{owner.__module__}.{owner.__qualname__}"
    return f"{qualified}.{piece.name} ({piece.kind.value}; {piece.why})"


def problems(pieces: Iterable[Reliance], instances: dict[type, Any]) -> list[str]:
    """One line per piece the installed discord.py lacks, or has in another shape.

    :param instances: a real instance per class whose INSTANCE pieces are checked.
    """
    found = []
    for piece in pieces:
        trouble = _trouble(piece, instances)
        if trouble:
            found.append(f"{_label(piece)}: {trouble}")
    return found


def _trouble(piece: Reliance, instances: dict[type, Any]) -> str | None:
    owner, name, kind = piece.owner, piece.name, piece.kind
    if kind is Kind.INSTANCE:
        assert isinstance(owner, type)
        return None if hasattr(instances[owner], name) else "not set on a new instance"
    if kind is Kind.SET_BY:
        assert piece.set_by is not None
        if f".{name} = " in inspect.getsource(piece.set_by):
            return None
        return f"no longer assigned in {piece.set_by.__qualname__}"
    if not hasattr(owner, name):
        return "missing"
    if kind is Kind.CONSTANT:
        return None
    member = getattr(owner, name)
    if not callable(member):
        return "not callable"
    if (kind is Kind.COROUTINE) != inspect.iscoroutinefunction(member):
        return "no longer a coroutine" if kind is Kind.COROUTINE else "now a coroutine"
    parameters = inspect.signature(member).parameters
    lost = [param for param in piece.params if param not in parameters]
    return f"lost parameter(s) {', '.join(lost)}" if lost else None


@contextlib.contextmanager
def _instances() -> Iterator[dict[type, Any]]:
    """A real instance of each class with INSTANCE pieces, built as discord.py builds them."""
    state = VoiceConnectionState(discord.Object(1), hook=None)  # type: ignore[arg-type]
    try:
        yield {
            VoiceConnectionState: state,
            SocketReader: SocketReader(state),  # never started
            DiscordVoiceWebSocket: DiscordVoiceWebSocket(None, None),  # type: ignore[arg-type]
        }
    finally:
        # discord.py's __init__ started a reader thread of its own.
        reader = getattr(state, "_socket_reader", None)
        if reader is not None:
            reader.stop()
            reader.join(5)


def _check(pieces: Iterable[Reliance]) -> list[str]:
    with _instances() as instances:
        return problems(pieces, instances)


def test_installed_discordpy_has_every_piece_the_fence_relies_on() -> None:
    found = _check(RELIED_ON)
    assert not found, (
        f"bot/voice/discordpy.py was written against discord.py {WRITTEN_AGAINST}; "
        f"the installed {discord.__version__} lacks what it relies on:\n  " + "\n  ".join(found)
    )


def test_the_check_reports_what_is_missing() -> None:
    """The check can fail, and says which piece, for every kind."""
    broken = (
        Reliance(VoiceConnectionState, "_no_such_method", Kind.METHOD, "test"),
        Reliance(VoiceConnectionState, "_create_socket", Kind.COROUTINE, "test"),
        Reliance(VoiceConnectionState, "_connect_websocket", Kind.METHOD, "test"),
        Reliance(VoiceConnectionState, "_connect_websocket", Kind.COROUTINE, "test", ("no_such_param",)),
        Reliance(VoiceConnectionState, "_no_such_attribute", Kind.INSTANCE, "test"),
        Reliance(SocketReader, "_no_such_list", Kind.INSTANCE, "test"),
        Reliance(DiscordVoiceWebSocket, "NO_SUCH_OPCODE", Kind.CONSTANT, "test"),
        Reliance(DiscordVoiceWebSocket, "_no_such_link", Kind.SET_BY, "test",
                 set_by=DiscordVoiceWebSocket.from_connection_state),
    )
    found = _check(broken)
    assert found == [
        "discord.voice_state.VoiceConnectionState._no_such_method (method; test): missing",
        "discord.voice_state.VoiceConnectionState._create_socket (coroutine; test): no longer a coroutine",
        "discord.voice_state.VoiceConnectionState._connect_websocket (method; test): now a coroutine",
        "discord.voice_state.VoiceConnectionState._connect_websocket (coroutine; test): lost parameter(s) no_such_param",
        "discord.voice_state.VoiceConnectionState._no_such_attribute (instance; test): not set on a new instance",
        "discord.voice_state.SocketReader._no_such_list (instance; test): not set on a new instance",
        "discord.gateway.DiscordVoiceWebSocket.NO_SUCH_OPCODE (constant; test): missing",
        "discord.gateway.DiscordVoiceWebSocket._no_such_link (set_by; test): "
        "no longer assigned in DiscordVoiceWebSocket.from_connection_state",
    ]


def test_only_the_fence_imports_discordpy_internals() -> None:
    """Outside bot/voice/discordpy.py, bot/voice imports ``discord`` itself, never its modules."""
    voice = Path(bot.voice.__file__).parent
    offenders = []
    for path in sorted(voice.glob("*.py")):
        if path.name == "discordpy.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno} {module}" for module in modules if module.startswith("discord.")]
    assert not offenders, "discord.py internals imported outside the fence: " + ", ".join(offenders)
