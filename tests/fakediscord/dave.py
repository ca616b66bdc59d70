"""DAVE as Discord's voice server runs it: one MLS group per voice channel.

Sans-IO: :class:`DaveRoom` takes what members sent (op 26, 28, 23, 31, joins
and leaves) and returns the messages to send as :class:`DaveOut` values; the
voice websocket server does the transport. Binary payloads in a ``DaveOut`` do
NOT include the ``u16 seq`` and opcode byte: the server adds those.

Ordering the voice server must keep: call :meth:`DaveRoom.join` only after the
member's SESSION_DESCRIPTION (op 4) went out, and send what it returns after
op 4 on that socket. discord.py 2.7.1 creates its ``dave_session`` when op 4
arrives and silently drops binary frames until then, so an op 25 sent earlier
is lost and the member can never join the group.

How the room runs the group (checked against real davey sessions):

- Group creation: while no group exists every member with a key package holds
  its own pending epoch-0 group. Each gets the Adds of all the *others*; the
  first commit that arrives wins, its sender gets op 29, the members it added
  get op 30 (Welcome) only.
- Afterwards one proposal batch is in flight at a time, always at the room's
  current epoch and sent to every member of the group, so no member can ever
  see an op 27 for an epoch it is not at: an op 27 that davey rejects raises
  inside discord.py's voice poller and silently kills the connection.
- A commit is accepted only if its epoch is the batch's and it references
  exactly the proposals its sender was sent (so a committer has always seen
  the op 27 its commit references, and stale commits after a revoke lose).
- Removes blank a leaf, Adds then fill the leftmost blank leaf (RFC 9420
  12.1.1/12.1.3); the room mirrors the tree to address Removes.
- The next batch waits until the transition executed (op 22): davey switches a
  sender's key inside ``process_commit``, so speakers should hold media while
  a transition is pending (:meth:`DaveRoom.transition_executed`,
  :attr:`SimulatedMember.can_send`).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Union

import davey

from .dave_mls import (
    CIPHERSUITE_P256,
    CONTENT_COMMIT,
    SENDER_MEMBER,
    ExternalSender,
    MLSDecodeError,
    parse_key_package,
    parse_public_message,
    proposal_ref,
    proposals_vector,
    refs_vector,
    split_commit_welcome,
)

__all__ = [
    "DaveOut",
    "DaveRoom",
    "ExternalSender",
    "SimulatedMember",
    "proposal_ref",
    "split_commit_welcome",
    "OP_PREPARE_TRANSITION",
    "OP_EXECUTE_TRANSITION",
    "OP_TRANSITION_READY",
    "OP_PREPARE_EPOCH",
    "OP_EXTERNAL_SENDER",
    "OP_KEY_PACKAGE",
    "OP_PROPOSALS",
    "OP_COMMIT_WELCOME",
    "OP_ANNOUNCE_COMMIT",
    "OP_WELCOME",
    "OP_INVALID_COMMIT_WELCOME",
]

_log = logging.getLogger(__name__)

OP_PREPARE_TRANSITION = 21
OP_EXECUTE_TRANSITION = 22
OP_TRANSITION_READY = 23
OP_PREPARE_EPOCH = 24
OP_EXTERNAL_SENDER = 25
OP_KEY_PACKAGE = 26
OP_PROPOSALS = 27
OP_COMMIT_WELCOME = 28
OP_ANNOUNCE_COMMIT = 29
OP_WELCOME = 30
OP_INVALID_COMMIT_WELCOME = 31

_APPEND = 0
_REVOKE = 1

Payload = Union[bytes, dict]


@dataclass(frozen=True)
class DaveOut:
    """One message the voice server must send to ``user_id``.

    ``opcode`` 21, 22, 24 carry a JSON ``d`` dict; 25, 27, 29, 30 carry bytes
    without the ``u16 seq`` and opcode prefix.
    """

    user_id: int
    opcode: int
    payload: Payload


@dataclass(eq=False)
class _Proposal:
    ref: bytes
    message: bytes
    #: For an Add the user id being added; for a Remove the leaf index.
    target: int
    is_add: bool
    #: For an Add: the key package, to tell whether its session still exists.
    key_package: bytes = b""


@dataclass(eq=False)
class _Batch:
    """Proposals in flight at ``epoch``: which member holds which, in order."""

    epoch: int
    creation: bool
    held: dict[int, list[_Proposal]]


@dataclass(eq=False)
class _Transition:
    transition_id: int
    recipients: set[int]
    awaiting: set[int] = field(default_factory=set)


class DaveRoom:
    """One voice channel's DAVE group as Discord's voice server runs it.

    Every handler returns the messages to send, in order. Handlers never raise
    for protocol races (stale commits, unknown transition ids are logged and
    ignored, as Discord does); they raise ``ValueError`` for a key package that
    is malformed or names another user, which the voice server should answer
    by closing that member's socket.
    """

    def __init__(self, channel_id: int, *, protocol_version: int = 1, sender: ExternalSender | None = None) -> None:
        if protocol_version not in (0, 1):
            raise ValueError(f"DAVE protocol version {protocol_version} is not supported (only 0 and 1)")
        self.channel_id = channel_id
        self.protocol_version = protocol_version
        self.sender = sender or ExternalSender()
        #: The group's current epoch; 0 while no group exists.
        self.epoch = 0
        #: How many transitions were executed (op 22 sent) so far.
        self.executed_transitions = 0
        self._key_packages: dict[int, bytes | None] = {}
        # Mirror of the group's leaves: user id per leaf, None for blank.
        self._leaves: list[int | None] = []
        # Leaves whose occupant left or reset its session: to be removed.
        self._stale: set[int] = set()
        self._batch: _Batch | None = None
        self._transition: _Transition | None = None
        self._last_tid = 0
        self._group_id = channel_id.to_bytes(8, "big")

    # --- state ----------------------------------------------------------------

    @property
    def members(self) -> frozenset[int]:
        """Users whose voice session is up in this room."""
        return frozenset(self._key_packages)

    @property
    def group_members(self) -> frozenset[int]:
        """Users holding a live leaf in the group (what every member can decrypt)."""
        return frozenset(self._live_leaves())

    @property
    def leaves(self) -> tuple[int | None, ...]:
        """The group's leaves as the room tracks them (user id, or None for blank)."""
        return tuple(self._leaves)

    def transition_executed(self) -> bool:
        """True when no transition is waiting for op 22 (media may flow)."""
        return self._transition is None

    @property
    def settled(self) -> bool:
        """True when nothing is in flight and every member with a key package is in the group."""
        if self._batch is not None or self._transition is not None or self._stale:
            return False
        live = self._live_leaves()
        return all(uid in live for uid, kp in self._key_packages.items() if kp is not None)

    # --- events from the voice server ----------------------------------------------

    def join(self, user_id: int) -> list[DaveOut]:
        """The member's voice session is up (its op 4 was sent): send the external sender.

        Joining again without leaving means a new voice session replaced the
        old one (a reconnect): the old session's leaf is removed, the new
        session is added once its key package arrives.
        """
        out: list[DaveOut] = []
        if user_id in self._key_packages:
            self._key_packages[user_id] = None
            out = self._forget_session(user_id) + self._pump()
        self._key_packages[user_id] = None
        if not self.protocol_version:
            return []
        return [DaveOut(user_id, OP_EXTERNAL_SENDER, self.sender.package())] + out

    def leave(self, user_id: int) -> list[DaveOut]:
        """The member disconnected: the rest remove its leaf in a new epoch."""
        if user_id not in self._key_packages:
            return []
        del self._key_packages[user_id]
        return self._forget_session(user_id) + self._pump()

    def on_key_package(self, user_id: int, key_package: bytes) -> list[DaveOut]:
        """Op 26: a member's (new) key package; it is added at the next batch."""
        if user_id not in self._key_packages:
            raise ValueError(f"user {user_id} sent a DAVE key package before joining room {self.channel_id}")
        if not self.protocol_version:
            return []
        try:
            info = parse_key_package(key_package)
        except MLSDecodeError as exc:
            raise ValueError(f"user {user_id} sent a malformed DAVE key package: {exc}") from None
        if info.cipher_suite != CIPHERSUITE_P256 or info.user_id != user_id:
            raise ValueError(
                f"user {user_id} sent a DAVE key package for user {info.user_id} / cipher suite {info.cipher_suite}"
            )
        # discord.py only sends a key package from a fresh session (op 4, op 24,
        # after op 31): whatever the old session held is gone. The old key
        # package must not be proposed while forgetting it.
        self._key_packages[user_id] = None
        out = self._forget_session(user_id)
        self._key_packages[user_id] = key_package
        return out + self._pump()

    def on_commit_welcome(self, user_id: int, payload: bytes) -> list[DaveOut]:
        """Op 28: the first valid commit for the batch in flight wins."""
        batch = self._batch
        if batch is None or user_id not in batch.held:
            _log.debug("ignoring commit from %s: no batch in flight for it", user_id)
            return []
        try:
            commit, welcome = split_commit_welcome(payload)
            msg = parse_public_message(commit)
        except MLSDecodeError as exc:
            _log.warning("ignoring malformed commit from %s: %s", user_id, exc)
            return []
        held = {p.ref: p for p in batch.held[user_id]}
        refs = msg.proposal_refs
        sender_leaf = 0 if batch.creation else self._leaf_of(user_id)
        if (
            msg.group_id != self._group_id
            or msg.epoch != batch.epoch
            or msg.content_type != CONTENT_COMMIT
            or msg.sender_type != SENDER_MEMBER
            or msg.sender_index != sender_leaf
            or len(refs) != len(msg.body)  # type: ignore[arg-type]  # inline proposals: not from davey
            or sorted(refs) != sorted(held)
        ):
            _log.debug("ignoring stale or foreign commit from %s at epoch %d", user_id, msg.epoch)
            return []
        ordered = [held[ref] for ref in refs]
        adds = [p for p in ordered if p.is_add]
        if adds and welcome is None:
            _log.warning("ignoring commit from %s: it adds members but carries no Welcome", user_id)
            return []
        self._apply(user_id, batch, ordered)
        self.epoch = batch.epoch + 1
        self._batch = None
        commit_to = [user_id] if batch.creation else [u for u in batch.held if u in self._live_leaves()]
        # An Add whose session is gone (left, or reset since) fills a leaf no
        # one can use: that leaf is removed by the next batch.
        welcome_to = [p.target for p in adds if self._key_packages.get(p.target) == p.key_package]
        tid = self._new_transition_id()
        prefix = struct.pack(">H", tid)
        out = [DaveOut(u, OP_ANNOUNCE_COMMIT, prefix + commit) for u in commit_to]
        if welcome is not None:
            out += [DaveOut(u, OP_WELCOME, prefix + welcome) for u in welcome_to]
        recipients = set(commit_to) | set(welcome_to)
        self._transition = _Transition(tid, recipients, set(recipients))
        _log.debug("room %d: epoch %d by %s, transition %d", self.channel_id, self.epoch, user_id, tid)
        return out

    def on_transition_ready(self, user_id: int, transition_id: int) -> list[DaveOut]:
        """Op 23: once every recipient of the transition is ready, op 22 executes it."""
        t = self._transition
        if t is None or t.transition_id != transition_id:
            _log.debug("ignoring transition ready %d from %s", transition_id, user_id)
            return []
        t.awaiting.discard(user_id)
        return self._maybe_execute()

    def on_invalid_commit_welcome(self, user_id: int, transition_id: int) -> list[DaveOut]:
        """Op 31: the member reset its session; its old leaf is removed, its next key package re-added."""
        if user_id not in self._key_packages:
            return []
        _log.info("room %d: user %s could not process transition %d", self.channel_id, user_id, transition_id)
        self._key_packages[user_id] = None
        return self._forget_session(user_id) + self._pump()

    # --- internals -------------------------------------------------------------------

    def _live_leaves(self) -> dict[int, int]:
        return {uid: i for i, uid in enumerate(self._leaves) if uid is not None and i not in self._stale}

    def _leaf_of(self, user_id: int) -> int | None:
        return self._live_leaves().get(user_id)

    def _new_transition_id(self) -> int:
        # discord.py only answers non-zero ids with op 23.
        self._last_tid = self._last_tid % 0xFFFF + 1
        return self._last_tid

    def _forget_session(self, user_id: int) -> list[DaveOut]:
        """The member's MLS state is gone (left or reset): drop it everywhere."""
        leaf = self._leaf_of(user_id)
        if leaf is not None:
            self._stale.add(leaf)
        out = self._revoke(user_id)
        if self._transition is not None:
            self._transition.recipients.discard(user_id)
            self._transition.awaiting.discard(user_id)
            out += self._maybe_execute()
        return out

    def _revoke(self, user_id: int) -> list[DaveOut]:
        """Take ``user_id`` out of the batch in flight: as a holder, and as an Add target.

        An Add is revoked (op 27 revoke) only where nothing else would be left
        to add: davey 0.1.7 decides whether its new commit carries a Welcome
        from the proposals of the *current* op 27 only, so a commit rebuilt
        after a revoke never has one and could not be used. Elsewhere the Add
        stays; the commit adds a leaf nobody uses and the next batch removes it.
        """
        batch = self._batch
        if batch is None:
            return []
        batch.held.pop(user_id, None)
        out = []
        for holder, props in batch.held.items():
            gone = [p for p in props if p.is_add and p.target == user_id]
            kept = [p for p in props if not (p.is_add and p.target == user_id)]
            if gone and not any(p.is_add for p in kept):
                # Safe: no commit won yet, so the holder still has these pending.
                out.append(DaveOut(holder, OP_PROPOSALS, bytes((_REVOKE,)) + refs_vector([p.ref for p in gone])))
                props[:] = kept
        if not any(batch.held.values()):
            self._batch = None
        return out

    def _maybe_execute(self) -> list[DaveOut]:
        t = self._transition
        if t is None or t.awaiting:
            return []
        self._transition = None
        self.executed_transitions += 1
        out = [DaveOut(u, OP_EXECUTE_TRANSITION, {"transition_id": t.transition_id}) for u in sorted(t.recipients)]
        return out + self._pump()

    def _apply(self, committer: int, batch: _Batch, ordered: list[_Proposal]) -> None:
        """Mirror the commit on the leaves: Removes first, then Adds into the leftmost blank."""
        if batch.creation:
            self._leaves = [committer]
            self._stale.clear()
        for p in ordered:
            if not p.is_add:
                self._leaves[p.target] = None
                self._stale.discard(p.target)
        for p in ordered:
            if p.is_add:
                try:
                    leaf = self._leaves.index(None)
                    self._leaves[leaf] = p.target
                except ValueError:
                    leaf = len(self._leaves)
                    self._leaves.append(p.target)
                if self._key_packages.get(p.target) != p.key_package:
                    self._stale.add(leaf)
        while self._leaves and self._leaves[-1] is None:
            self._leaves.pop()

    def _pump(self) -> list[DaveOut]:
        """Start the next proposal batch if the room is idle and something changed."""
        if self._batch is not None or self._transition is not None or not self.protocol_version:
            return []
        live = self._live_leaves()
        if self._leaves and not live:
            # Nobody left who could commit: the group is gone, start over.
            _log.info("room %d: no live member left in the group, recreating it", self.channel_id)
            self._leaves, self._stale, self.epoch = [], set(), 0
        waiting = [uid for uid, kp in self._key_packages.items() if kp is not None and uid not in live]
        if self._leaves:
            props = [self._remove(i) for i in sorted(self._stale)] + [self._add(u) for u in waiting]
            if not props:
                return []
            batch = _Batch(self.epoch, False, {uid: list(props) for uid in live})
        else:
            if len(waiting) < 2:
                return []
            adds = {uid: self._add(uid) for uid in waiting}
            batch = _Batch(0, True, {uid: [p for o, p in adds.items() if o != uid] for uid in waiting})
        self._batch = batch
        return [
            DaveOut(uid, OP_PROPOSALS, bytes((_APPEND,)) + proposals_vector([p.message for p in props]))
            for uid, props in batch.held.items()
        ]

    def _add(self, user_id: int) -> _Proposal:
        kp = self._key_packages[user_id]
        assert kp is not None
        msg = self.sender.add_proposal(self.channel_id, self.epoch, kp)
        return _Proposal(proposal_ref(msg), msg, user_id, True, kp)

    def _remove(self, leaf: int) -> _Proposal:
        msg = self.sender.remove_proposal(self.channel_id, self.epoch, leaf)
        return _Proposal(proposal_ref(msg), msg, leaf, False)


class SimulatedMember:
    """A simulated speaker's client side: a real ``davey.DaveSession`` driven as discord.py 2.7.1 drives its own.

    Each branch of :meth:`handle` names the discord.py function it mirrors
    (``DiscordVoiceWebSocket.received_message`` / ``received_binary_message``
    in ``gateway.py``; ``VoiceConnectionState.reinit_dave_session``,
    ``_recover_from_invalid_commit``, ``_execute_transition`` in
    ``voice_state.py``). Like discord.py, an op 27 that davey rejects raises
    out of :meth:`handle` (in discord.py it kills the voice poller).
    """

    def __init__(self, user_id: int, channel_id: int, protocol_version: int = 1) -> None:
        self.user_id = user_id
        self.channel_id = channel_id
        #: discord.py's ``dave_protocol_version`` (from op 4).
        self.protocol_version = protocol_version
        #: discord.py's ``dave_pending_transitions``: transition id -> protocol version.
        self.pending_transitions: dict[int, int] = {}
        self.downgraded = False
        #: How many times this member answered with op 31 (recoveries).
        self.recoveries = 0
        self.session: davey.DaveSession | None = (
            davey.DaveSession(protocol_version, user_id, channel_id) if protocol_version > 0 else None
        )

    @property
    def ready(self) -> bool:
        """discord.py's ``can_encrypt``: frames are DAVE-encrypted from now on."""
        return self.protocol_version != 0 and self.session is not None and self.session.ready

    @property
    def can_send(self) -> bool:
        """Media should wait while a transition is pending (keys switch inside ``process_commit``)."""
        return not self.pending_transitions

    def key_package(self) -> bytes:
        """The op 26 payload discord.py sends right after op 4 (``reinit_dave_session``)."""
        if self.session is None:
            raise RuntimeError(f"user {self.user_id} has no DAVE session (protocol version 0)")
        return self.session.get_serialized_key_package()

    def encrypt_opus(self, frame: bytes) -> bytes:
        """``VoiceClient._get_voice_packet``: DAVE-encrypt when ready, else plain Opus.

        A real client sends plain Opus before its session is ready, which
        receivers cannot tell from a broken frame; callers should hold media
        until :attr:`ready` and :attr:`can_send`.
        """
        if self.session is not None and self.ready:
            return self.session.encrypt_opus(frame)
        return frame

    def decrypt(self, sender_id: int, frame: bytes) -> bytes:
        """What a receiver does with a sender's audio frame."""
        if self.session is None:
            return frame
        return self.session.decrypt(sender_id, davey.MediaType.audio, frame)

    def handle(self, out: DaveOut) -> list[tuple[int, Payload]]:
        """Consume one message from the voice server; return (opcode, payload) replies in order."""
        op, p = out.opcode, out.payload
        if self.session is None:
            # received_message / received_binary_message: DAVE ops need a dave_session.
            return []
        if op == OP_PREPARE_TRANSITION:  # received_message, DAVE_PREPARE_TRANSITION
            assert isinstance(p, dict)
            tid = p["transition_id"]
            self.pending_transitions[tid] = p["protocol_version"]
            if tid == 0:
                self._execute_transition(tid)
                return []
            if p["protocol_version"] == 0:
                self.session.set_passthrough_mode(True, 120)
            return [(OP_TRANSITION_READY, {"transition_id": tid})]
        if op == OP_EXECUTE_TRANSITION:  # received_message, DAVE_EXECUTE_TRANSITION
            assert isinstance(p, dict)
            self._execute_transition(p["transition_id"])
            return []
        if op == OP_PREPARE_EPOCH:  # received_message, DAVE_PREPARE_EPOCH
            assert isinstance(p, dict)
            if p["epoch"] == 1:
                self.protocol_version = p["protocol_version"]
                return self._reinit()
            return []
        assert isinstance(p, bytes)
        if op == OP_EXTERNAL_SENDER:  # received_binary_message, MLS_EXTERNAL_SENDER
            self.session.set_external_sender(p)
            return []
        if op == OP_PROPOSALS:  # received_binary_message, MLS_PROPOSALS (no try: errors escape)
            optype = davey.ProposalsOperationType.append if p[0] == 0 else davey.ProposalsOperationType.revoke
            result = self.session.process_proposals(optype, p[1:])
            if isinstance(result, davey.CommitWelcome):
                return [(OP_COMMIT_WELCOME, result.commit + result.welcome if result.welcome else result.commit)]
            return []
        if op in (OP_ANNOUNCE_COMMIT, OP_WELCOME):  # received_binary_message, MLS_ANNOUNCE_COMMIT_TRANSITION / MLS_WELCOME
            (tid,) = struct.unpack_from(">H", p, 0)
            try:
                if op == OP_ANNOUNCE_COMMIT:
                    self.session.process_commit(p[2:])
                else:
                    self.session.process_welcome(p[2:])
            except Exception as exc:  # discord.py catches everything here too
                _log.info("user %s: op %d for transition %d failed: %s", self.user_id, op, tid, exc)
                return self._recover_from_invalid_commit(tid)
            if tid != 0:
                self.pending_transitions[tid] = self.protocol_version
                return [(OP_TRANSITION_READY, {"transition_id": tid})]
            return []
        _log.debug("user %s: ignoring DAVE opcode %d", self.user_id, op)
        return []

    def _reinit(self) -> list[tuple[int, Payload]]:
        """``VoiceConnectionState.reinit_dave_session``."""
        if self.protocol_version > 0:
            if self.session is not None:
                self.session.reinit(self.protocol_version, self.user_id, self.channel_id)
            else:
                self.session = davey.DaveSession(self.protocol_version, self.user_id, self.channel_id)
            return [(OP_KEY_PACKAGE, self.session.get_serialized_key_package())]
        if self.session is not None:
            self.session.reset()
            self.session.set_passthrough_mode(True, 10)
        return []

    def _recover_from_invalid_commit(self, transition_id: int) -> list[tuple[int, Payload]]:
        """``VoiceConnectionState._recover_from_invalid_commit``: op 31, then a fresh session."""
        self.recoveries += 1
        return [(OP_INVALID_COMMIT_WELCOME, {"transition_id": transition_id})] + self._reinit()

    def _execute_transition(self, transition_id: int) -> None:
        """``VoiceConnectionState._execute_transition``."""
        if transition_id not in self.pending_transitions:
            _log.warning("user %s: execute for unknown transition %d", self.user_id, transition_id)
            return
        old = self.protocol_version
        self.protocol_version = self.pending_transitions.pop(transition_id)
        if old != self.protocol_version and self.protocol_version == 0:
            self.downgraded = True
        elif transition_id > 0 and self.downgraded:
            self.downgraded = False
            if self.session is not None:
                self.session.set_passthrough_mode(True, 10)
