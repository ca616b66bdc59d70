"""Receive side of DAVE (Discord's end-to-end voice encryption).

discord.py 2.7.1 runs the MLS handshake and keeps the session on its
``VoiceConnectionState`` (``dave_session``, ``dave_protocol_version``), both
replaced as transitions happen; so they are read on every frame, never cached.
Decrypting needs the *sender's* user id (per-sender keys), hence this runs
after the SSRC map. Frames that arrive in the clear while DAVE is on (during a
transition) are davey's call: it lets them through only in passthrough mode.
"""

from __future__ import annotations

import re
from typing import Final

import davey

from .discordpy import DaveState
from .refused import DatagramRefused

__all__ = ("DAVE_FAILURE_PREFIX", "OPUS_SILENCE", "DaveDecryptor", "DaveError", "DaveState")

#: Every drop reason of a frame DAVE could not open starts with this.
DAVE_FAILURE_PREFIX: Final = "dave:"

#: The 3-byte Opus silence frame; senders emit it unencrypted.
OPUS_SILENCE = b"\xf8\xff\xfe"

_AUDIO = davey.MediaType.audio
_KIND = re.compile(r"Failed to decrypt: (\w+)(?:\((\w+))?")


class DaveError(DatagramRefused):
    """A frame DAVE could not open; ``reason`` is a counter key such as
    ``dave:NoDecryptorForUser`` (the sender's key is not known yet) or
    ``dave:no_session``."""


def _reason(exc: ValueError) -> str:
    """A bounded counter key from davey's error text.

    davey says ``Failed to decrypt: NoDecryptorForUser`` or
    ``Failed to decrypt: DecryptionFailed(NoValidCryptorFound { ...sizes... })``;
    the key keeps the error names and drops the per-frame details.
    """
    match = _KIND.match(str(exc))
    if match is None:
        return DAVE_FAILURE_PREFIX + "failed"
    return DAVE_FAILURE_PREFIX + ":".join(name for name in match.groups() if name)


class DaveDecryptor:
    """Turns a transport-decrypted frame into the sender's Opus frame."""

    __slots__ = ("_state",)

    def __init__(self, state: DaveState) -> None:
        self._state = state

    def decrypt(self, user_id: int, frame: bytes) -> bytes:
        """Return the Opus frame ``user_id`` sent, or raise :class:`DaveError`."""
        state = self._state
        if state.dave_protocol_version == 0 or frame == OPUS_SILENCE:
            return frame
        session = state.dave_session
        if session is None:
            raise DaveError(DAVE_FAILURE_PREFIX + "no_session")
        try:
            return session.decrypt(user_id, _AUDIO, frame)
        except ValueError as exc:
            raise DaveError(_reason(exc)) from None
