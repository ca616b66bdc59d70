"""One voice channel on the fake voice server: who is in it, DAVE routing, media fan-out.

Members are real clients (discord.py voice connections, `Listener`s) and
simulated speakers (in-process). The room tells clients about each other
(CLIENTS_CONNECT / CLIENT_DISCONNECT / SPEAKING), runs the channel's DAVE group
through the DAVE engineer's `DaveRoom` (routing its messages to clients over
their websocket and to simulated members in-process), and sends every speaker's
packets to every connected client, encrypted with that client's own key.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from .rtp import RtpPacket

__all__ = ["Listener", "VoiceRoom"]

_log = logging.getLogger(__name__)

# Voice gateway opcodes the room sends or routes.
OP_SPEAKING = 5
OP_CLIENTS_CONNECT = 11
OP_CLIENT_DISCONNECT = 13
OP_DAVE_TRANSITION_READY = 23
OP_MLS_KEY_PACKAGE = 26
OP_MLS_COMMIT_WELCOME = 28
OP_MLS_INVALID_COMMIT_WELCOME = 31
#: DAVE opcodes that travel as JSON (the rest are binary).
DAVE_JSON_OPS = frozenset({21, 22, 24})


class Listener(Protocol):
    """What the room needs of a real client's voice connection."""

    user_id: int

    def send_json(self, op: int, data: dict[str, Any]) -> None:
        """Queue a JSON message (the connection adds `seq`)."""

    def send_binary(self, op: int, payload: bytes) -> None:
        """Queue a binary message (the connection adds the u16 seq and opcode)."""

    def send_media(self, packet: RtpPacket) -> bool:
        """Encrypt `packet` with this connection's key and send it over UDP."""

    def send_datagram(self, clear: bytes, secret: bytes | None) -> bool:
        """Send raw bytes (sealed with the connection's cipher when `secret` is given)."""


class VoiceRoom:
    """Membership, DAVE group and media fan-out of one voice channel."""

    def __init__(self, guild_id: int, channel_id: int, *, dave_version: int) -> None:
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.dave_version = dave_version
        self.clients: dict[int, Listener] = {}
        #: Simulated speakers present: user id -> their SSRC (None until they first send).
        self.speakers: dict[int, int | None] = {}
        #: SSRCs SPEAKING has announced, per user, replayed to clients who join later.
        self.announced: dict[int, int] = {}
        #: Simulated speakers in a stage's audience: Discord forwards none of their media.
        self.suppressed: set[int] = set()
        self._dave: Any = None
        self._members: dict[int, Any] = {}
        self._routing = False
        self._backlog: deque[Any] = deque()
        if dave_version:
            from .dave import DaveRoom  # the DAVE half lives in its own module

            self._dave = DaveRoom(channel_id, protocol_version=dave_version)

    # -- membership -------------------------------------------------------

    def everyone(self) -> list[int]:
        """User ids of all members, clients and speakers."""
        return [*self.clients, *self.speakers]

    def add_client(self, client: Listener) -> None:
        """A real client finished SELECT_PROTOCOL (its SESSION_DESCRIPTION is out)."""
        uid = client.user_id
        others = [u for u in self.everyone() if u != uid]
        self.clients[uid] = client
        if others:
            client.send_json(OP_CLIENTS_CONNECT, {"user_ids": [str(u) for u in others]})
        for other_uid, ssrc in self.announced.items():
            client.send_json(OP_SPEAKING, {"user_id": str(other_uid), "ssrc": ssrc, "speaking": 1})
        self._broadcast_json(OP_CLIENTS_CONNECT, {"user_ids": [str(uid)]}, skip=uid)
        if self._dave is not None:
            self._route(self._dave.join(uid))

    def remove_client(self, user_id: int) -> None:
        """A real client left (or its websocket is gone)."""
        if self.clients.pop(user_id, None) is None:
            return
        self._left(user_id)

    def add_speaker(self, user_id: int) -> None:
        """A simulated speaker entered the channel."""
        if user_id in self.speakers:
            return
        self.speakers[user_id] = None
        self._broadcast_json(OP_CLIENTS_CONNECT, {"user_ids": [str(user_id)]}, skip=user_id)
        if self._dave is not None:
            from .dave import SimulatedMember

            member = self._members[user_id] = SimulatedMember(user_id, self.channel_id, self.dave_version)
            self._route(self._dave.join(user_id))
            # discord.py sends its key package as soon as op 4 arrives; the member does the same.
            self._route(self._dave.on_key_package(user_id, member.key_package()))

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Hold the room's DAVE messages while the block runs, then deliver them in order.

        Speakers added inside the block wait for the same proposal batch (the
        group commits every key package waiting when a batch starts), so many
        joins cost two group commits instead of one each: hundreds of
        simulated speakers join in seconds instead of an hour.
        """
        if self._routing:
            yield
            return
        self._routing = True
        try:
            yield
        finally:
            self._routing = False
            self._route([])

    def set_suppressed(self, user_id: int, suppressed: bool) -> None:
        """A simulated speaker moved to a stage's audience (True) or onto its speakers (False)."""
        if suppressed:
            self.suppressed.add(user_id)
        else:
            self.suppressed.discard(user_id)

    def forwards(self, user_id: int) -> bool:
        """Whether media from `user_id` reaches the others (not when they are in a stage's audience)."""
        return user_id not in self.suppressed

    def remove_speaker(self, user_id: int) -> None:
        """A simulated speaker left the channel."""
        self.suppressed.discard(user_id)
        if self.speakers.pop(user_id, None) is None and user_id not in self._members:
            return
        self._members.pop(user_id, None)
        self._left(user_id)

    def _left(self, user_id: int) -> None:
        self.announced.pop(user_id, None)
        self._broadcast_json(OP_CLIENT_DISCONNECT, {"user_id": str(user_id)})
        if self._dave is not None:
            self._route(self._dave.leave(user_id))

    def empty(self) -> bool:
        """True when nobody is left."""
        return not self.clients and not self.speakers

    @property
    def dave_settled(self) -> bool:
        """True when every member can open everyone's media: DAVE is off, or no group change
        is in flight and every member with a key package is in the group."""
        return self._dave is None or self._dave.settled

    # -- speaking and media --------------------------------------------------

    def announce(self, user_id: int, ssrc: int, speaking: int = 1) -> None:
        """Send SPEAKING (op 5) naming `ssrc` as `user_id`'s to every client."""
        self.announced[user_id] = ssrc
        self._broadcast_json(OP_SPEAKING, {"user_id": str(user_id), "ssrc": ssrc, "speaking": speaking})

    def dave_frame(self, user_id: int, frame: bytes) -> bytes | None:
        """The frame as `user_id` would put it on the wire: DAVE-encrypted when the
        group is on; None while the sender must hold its media (not yet in the
        group, or an epoch transition is pending, when davey already switched
        the sender's key but receivers have not)."""
        if self._dave is None:
            return frame
        member = self._members.get(user_id)
        if member is None or not member.ready or not member.can_send or not self._dave.transition_executed():
            return None
        return member.encrypt_opus(frame)

    def dave_readers(self) -> frozenset[int] | None:
        """Who can open a frame a speaker seals now: the members of the DAVE group (None with
        DAVE off: anyone). A client that is not among them (it is rejoining, its key package
        not yet committed) cannot decrypt it, however soon it joins."""
        return None if self._dave is None else self._dave.group_members

    def fan_out(self, packet: RtpPacket, *, skip: int | None = None) -> int:
        """Send `packet` to every client (except `skip`); return how many datagrams left."""
        sent = 0
        for uid, client in list(self.clients.items()):
            if uid != skip and client.send_media(packet):
                sent += 1
        return sent

    def fan_out_raw(self, clear: bytes, secret: bytes | None) -> int:
        """Send raw (optionally sealed) bytes to every client: garbage and RTCP events."""
        return sum(1 for c in list(self.clients.values()) if c.send_datagram(clear, secret))

    # -- DAVE -------------------------------------------------------------

    def dave_from_client(self, user_id: int, op: int, payload: Any) -> None:
        """A DAVE message from a real client: binary payload (without opcode) or JSON `d`."""
        if self._dave is None or user_id not in self.clients:
            return
        try:
            self._route(self._from_member(user_id, op, payload))
        except ValueError as exc:  # a malformed key package: Discord would drop the client
            _log.warning("DAVE message from %d refused: %s", user_id, exc)

    def dave_member(self, user_id: int) -> Any:
        """The in-process davey session of a simulated speaker (None with DAVE off)."""
        return self._members.get(user_id)

    def _from_member(self, user_id: int, op: int, payload: Any) -> list[Any]:
        dave = self._dave
        if op == OP_MLS_KEY_PACKAGE:
            return dave.on_key_package(user_id, payload)
        if op == OP_MLS_COMMIT_WELCOME:
            return dave.on_commit_welcome(user_id, payload)
        if op == OP_DAVE_TRANSITION_READY:
            return dave.on_transition_ready(user_id, _transition_id(payload))
        if op == OP_MLS_INVALID_COMMIT_WELCOME:
            return dave.on_invalid_commit_welcome(user_id, _transition_id(payload))
        _log.debug("ignoring DAVE op %d from %d", op, user_id)
        return []

    def _route(self, outs: list[Any]) -> None:
        # Simulated members answer synchronously; a queue instead of recursion keeps
        # messages in the order the DaveRoom produced them.
        self._backlog.extend(outs)
        if self._routing:
            return
        self._routing = True
        try:
            while self._backlog:
                self._deliver(self._backlog.popleft())
        finally:
            self._routing = False

    def _deliver(self, out: Any) -> None:
        client = self.clients.get(out.user_id)
        if client is not None:
            if out.opcode in DAVE_JSON_OPS:
                client.send_json(out.opcode, out.payload)
            else:
                client.send_binary(out.opcode, out.payload)
            return
        member = self._members.get(out.user_id)
        if member is None:
            _log.debug("DAVE op %d for %d who is gone", out.opcode, out.user_id)
            return
        for op, payload in member.handle(out):
            self._backlog.extend(self._from_member(out.user_id, op, payload))

    def _broadcast_json(self, op: int, data: dict[str, Any], *, skip: int | None = None) -> None:
        for uid, client in list(self.clients.items()):
            if uid != skip:
                client.send_json(op, data)


def _transition_id(payload: Any) -> int:
    return int(payload["transition_id"]) if isinstance(payload, dict) else int(payload)

