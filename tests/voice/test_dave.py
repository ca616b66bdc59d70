"""DAVE receive: passthrough rules and failures turned into counted reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import davey
import pytest

from bot.voice.dave import OPUS_SILENCE, DaveDecryptor, DaveError

from .dave_group import settled_group


@dataclass
class _ConnectionState:
    """The two attributes discord.py's VoiceConnectionState carries for DAVE."""

    dave_session: Any
    dave_protocol_version: int


def test_protocol_zero_passes_frames_as_is() -> None:
    session = davey.DaveSession(1, 1234, 5678)
    decryptor = DaveDecryptor(_ConnectionState(session, 0))
    assert decryptor.decrypt(42, b"plain opus") == b"plain opus"


def test_silence_passes_untouched_while_dave_is_on() -> None:
    session = davey.DaveSession(1, 1234, 5678)
    decryptor = DaveDecryptor(_ConnectionState(session, 1))
    assert decryptor.decrypt(42, OPUS_SILENCE) == OPUS_SILENCE


def test_session_without_group_raises_counted_reason() -> None:
    session = davey.DaveSession(1, 1234, 5678)
    decryptor = DaveDecryptor(_ConnectionState(session, 1))
    with pytest.raises(DaveError) as info:
        decryptor.decrypt(42, b"\x01" * 30 + b"\xfa\xfa")
    assert info.value.reason == "dave:NoDecryptorForUser"


def test_missing_session_while_version_set() -> None:
    decryptor = DaveDecryptor(_ConnectionState(None, 1))
    with pytest.raises(DaveError) as info:
        decryptor.decrypt(42, b"frame")
    assert info.value.reason == "dave:no_session"


def test_state_is_read_per_frame() -> None:
    """discord.py swaps version and session during transitions; nothing is cached."""
    state = _ConnectionState(davey.DaveSession(1, 1234, 5678), 1)
    decryptor = DaveDecryptor(state)
    with pytest.raises(DaveError):
        decryptor.decrypt(42, b"frame")
    state.dave_protocol_version = 0
    assert decryptor.decrypt(42, b"frame") == b"frame"


def test_real_group_frames_decrypt_per_sender() -> None:
    members = settled_group([111, 222, 333])
    bot = members[333]
    decryptor = DaveDecryptor(_ConnectionState(bot.session, bot.protocol_version))
    for sender_id in (111, 222):
        frame = b"\xfc" + bytes([sender_id % 256]) * 50
        encrypted = members[sender_id].encrypt_opus(frame)
        assert encrypted != frame
        assert decryptor.decrypt(sender_id, encrypted) == frame
        with pytest.raises(DaveError):  # per-sender keys: the wrong user id cannot open it
            decryptor.decrypt(333 if sender_id == 111 else 111, encrypted)


def test_plain_frames_while_dave_is_on_follow_davey_passthrough() -> None:
    members = settled_group([111, 222])
    bot = members[222]
    decryptor = DaveDecryptor(_ConnectionState(bot.session, 1))
    plain = b"\xfc" + b"\x11" * 40
    with pytest.raises(DaveError):
        decryptor.decrypt(111, plain)
    bot.session.set_passthrough_mode(True, 10)  # what discord.py does around transitions
    assert decryptor.decrypt(111, plain) == plain


def test_replayed_frame_is_a_counted_failure() -> None:
    members = settled_group([111, 222])
    decryptor = DaveDecryptor(_ConnectionState(members[222].session, 1))
    encrypted = members[111].encrypt_opus(b"\xfc" + b"\x22" * 40)
    assert decryptor.decrypt(111, encrypted) == b"\xfc" + b"\x22" * 40
    with pytest.raises(DaveError) as info:
        decryptor.decrypt(111, encrypted)
    assert info.value.reason == "dave:DecryptionFailed:NoValidCryptorFound"
