"""DaveRoom + SimulatedMember: real davey sessions form and keep a DAVE group.

Messages are routed in memory over per-member links that keep order per
direction, as websockets do; ``Net(seed=...)`` delivers the links in a seeded
random interleaving to shake out races between members. Any exception davey
raises on an op 27 propagates out of ``SimulatedMember.handle`` and fails the
test (in discord.py it would kill the voice poller).
"""

from __future__ import annotations

import random
import struct
from collections import deque

import davey
import numpy as np
import pytest

from sinks.opus import OpusEncoder
from tests.fakediscord import dave_mls as mls
from tests.fakediscord.dave import (
    OP_ANNOUNCE_COMMIT,
    OP_COMMIT_WELCOME,
    OP_EXECUTE_TRANSITION,
    OP_EXTERNAL_SENDER,
    OP_INVALID_COMMIT_WELCOME,
    OP_KEY_PACKAGE,
    OP_PREPARE_EPOCH,
    OP_PREPARE_TRANSITION,
    OP_PROPOSALS,
    OP_TRANSITION_READY,
    OP_WELCOME,
    DaveOut,
    DaveRoom,
    SimulatedMember,
)

CHANNEL = 1_234_567_890_123_456_789


class Net:
    """The voice server's transport, in memory: one FIFO per direction per member."""

    def __init__(self, room: DaveRoom, seed: int | None = None) -> None:
        self.room = room
        self.members: dict[int, SimulatedMember] = {}
        self.down: dict[int, deque[DaveOut]] = {}
        self.up: dict[int, deque[tuple[int, object]]] = {}
        self.sent: list[DaveOut] = []
        self.rng = random.Random(seed) if seed is not None else None
        #: Optional hook that may rewrite a message before a member sees it.
        self.tamper = None

    def _to_members(self, outs: list[DaveOut]) -> None:
        for out in outs:
            self.sent.append(out)
            if out.user_id in self.down:
                self.down[out.user_id].append(out)

    def connect(self, uid: int) -> SimulatedMember:
        """Op 4 went out: discord.py creates its session and sends op 26; the server sends op 25."""
        member = SimulatedMember(uid, CHANNEL)
        self.members[uid] = member
        self.down[uid] = deque()
        self.up[uid] = deque([(OP_KEY_PACKAGE, member.key_package())])
        self._to_members(self.room.join(uid))
        return member

    def disconnect(self, uid: int) -> None:
        """The socket closed: nothing more reaches or comes from this member."""
        del self.members[uid], self.down[uid], self.up[uid]
        self._to_members(self.room.leave(uid))

    def step(self) -> bool:
        """Deliver one message on some link; False when every link is empty."""
        links = [("down", u) for u, q in self.down.items() if q] + [("up", u) for u, q in self.up.items() if q]
        if not links:
            return False
        self.deliver(*(self.rng.choice(links) if self.rng else links[0]))
        return True

    def deliver(self, direction: str, uid: int) -> None:
        """Deliver the next message on one link ("down": to the member, "up": to the room)."""
        if direction == "down":
            out = self.down[uid].popleft()
            if self.tamper is not None:
                out = self.tamper(out)
            self.up[uid].extend(self.members[uid].handle(out))
            return
        op, payload = self.up[uid].popleft()
        room = self.room
        if op == OP_KEY_PACKAGE:
            outs = room.on_key_package(uid, payload)
        elif op == OP_COMMIT_WELCOME:
            outs = room.on_commit_welcome(uid, payload)
        elif op == OP_TRANSITION_READY:
            outs = room.on_transition_ready(uid, payload["transition_id"])
        elif op == OP_INVALID_COMMIT_WELCOME:
            outs = room.on_invalid_commit_welcome(uid, payload["transition_id"])
        else:
            raise AssertionError(f"unexpected opcode {op} from member {uid}")
        self._to_members(outs)

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("DAVE traffic did not settle")

    def ops(self, opcode: int) -> list[DaveOut]:
        return [o for o in self.sent if o.opcode == opcode]


def opus_frame(seed: int) -> bytes:
    """A real 20 ms Opus frame of a tone, different per speaker."""
    t = np.arange(960) / 48000
    pcm = (np.sin(2 * np.pi * (200 + 37 * seed) * t) * 8000).astype(np.int16).reshape(960, 1)
    return OpusEncoder(1, 64000, False).encode(pcm)


def assert_converged(net: Net) -> None:
    """Room and every session agree on the group, and everyone decrypts everyone."""
    room = net.room
    assert room.settled
    assert room.group_members == set(net.members)
    for uid, m in net.members.items():
        assert m.ready and m.can_send, uid
        assert m.session.epoch == room.epoch, uid
        assert m.session.own_leaf_index == room.leaves.index(uid), uid
        assert sorted(map(int, m.session.get_user_ids())) == sorted(net.members), uid
        assert m.recoveries == 0, uid
    for sender_id, sender in net.members.items():
        frame = opus_frame(sender_id % 97)
        encrypted = sender.encrypt_opus(frame)
        assert encrypted != frame and encrypted.endswith(b"\xfa\xfa")
        for receiver_id, receiver in net.members.items():
            if receiver_id != sender_id:
                assert receiver.decrypt(sender_id, encrypted) == frame, (sender_id, receiver_id)


def test_two_members_create_the_group() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    net.connect(10)
    net.run()
    # Alone: external sender set, no group yet, nothing proposed.
    assert [o.opcode for o in net.sent] == [OP_EXTERNAL_SENDER]
    assert not net.members[10].ready and room.epoch == 0
    net.connect(20)
    net.run()
    assert room.epoch == 1 and room.executed_transitions == 1
    # Both committed their epoch-0 group; only the first commit won.
    assert len(net.ops(OP_PROPOSALS)) == 2
    (announce,) = net.ops(OP_ANNOUNCE_COMMIT)
    (welcome,) = net.ops(OP_WELCOME)
    assert {announce.user_id, welcome.user_id} == {10, 20}
    tid = struct.unpack(">H", announce.payload[:2])[0]
    assert tid != 0 and welcome.payload[:2] == announce.payload[:2]
    assert sorted(o.user_id for o in net.ops(OP_EXECUTE_TRANSITION)) == [10, 20]
    assert all(o.payload == {"transition_id": tid} for o in net.ops(OP_EXECUTE_TRANSITION))
    assert room.leaves == (announce.user_id, welcome.user_id)
    assert_converged(net)


def test_third_member_joins_an_existing_group() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20):
        net.connect(uid)
    net.run()
    net.sent.clear()
    net.connect(30)
    net.run()
    assert room.epoch == 2 and room.leaves[2] == 30
    # Existing members get the Add and the commit; the newcomer only the Welcome.
    assert sorted(o.user_id for o in net.ops(OP_PROPOSALS)) == [10, 20]
    assert sorted(o.user_id for o in net.ops(OP_ANNOUNCE_COMMIT)) == [10, 20]
    assert [o.user_id for o in net.ops(OP_WELCOME)] == [30]
    assert_converged(net)


def test_transition_holds_media_until_executed() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20):
        net.connect(uid)
    # Deliver until the commit and welcome are processed but op 22 is not yet out.
    while not net.ops(OP_WELCOME) or any(not m.pending_transitions for m in net.members.values()):
        assert net.step()
    assert not room.transition_executed()
    assert not any(m.can_send for m in net.members.values())
    net.run()
    assert room.transition_executed()
    assert_converged(net)


def test_leave_blanks_a_leaf_and_next_join_refills_it() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20, 30):
        net.connect(uid)
        net.run()
    order = room.leaves
    middle = order[1]
    net.sent.clear()
    net.disconnect(middle)
    net.run()
    assert room.leaves == (order[0], None, order[2])
    assert net.ops(OP_WELCOME) == []  # a remove-only commit has no Welcome
    assert_converged(net)
    net.connect(40)
    net.run()
    assert room.leaves == (order[0], 40, order[2])
    assert_converged(net)
    # The last leaf leaving truncates the tree.
    net.disconnect(order[2])
    net.run()
    assert room.leaves == (order[0], 40)
    assert_converged(net)
    # Down to one member: still a group of one, and a newcomer joins it.
    net.disconnect(40)
    net.run()
    assert room.leaves == (order[0],) and net.members[order[0]].ready
    net.connect(50)
    net.run()
    assert room.leaves == (order[0], 50)
    assert_converged(net)


def test_everyone_leaves_and_the_group_is_recreated() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20):
        net.connect(uid)
    net.run()
    net.disconnect(10)
    net.disconnect(20)
    net.run()
    assert room.members == frozenset() and room.epoch == 0 and room.leaves == ()
    for uid in (30, 40):
        net.connect(uid)
    net.run()
    assert room.epoch == 1
    assert_converged(net)


def test_join_then_leave_before_commit_revokes_the_add() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20):
        net.connect(uid)
    net.run()
    epoch = room.epoch
    newcomer = SimulatedMember(30, CHANNEL)
    room.join(30)
    appends = room.on_key_package(30, newcomer.key_package())
    assert sorted(o.user_id for o in appends) == [10, 20]
    stale_commits = [(o.user_id, net.members[o.user_id].handle(o)) for o in appends]
    assert all(reply[0][0] == OP_COMMIT_WELCOME for _, reply in stale_commits)
    revokes = room.leave(30)
    assert sorted(o.user_id for o in revokes) == [10, 20]
    assert all(o.opcode == OP_PROPOSALS and o.payload[0] == 1 for o in revokes)
    for o in revokes:
        assert net.members[o.user_id].handle(o) == []  # nothing left to commit
        assert net.members[o.user_id].session.status == davey.SessionStatus.active
    # The commits made before the revoke must lose.
    for uid, reply in stale_commits:
        assert room.on_commit_welcome(uid, reply[0][1]) == []
    assert room.epoch == epoch and room.settled
    net.connect(40)
    net.run()
    assert_converged(net)


def _break_first(opcode: int, victim_box: list[int]):
    """A tamper hook that corrupts the first `opcode` message's MLS bytes."""

    def tamper(out: DaveOut) -> DaveOut:
        if out.opcode == opcode and not victim_box:
            victim_box.append(out.user_id)
            body = bytearray(out.payload)
            body[-5] ^= 0xFF
            return DaveOut(out.user_id, out.opcode, bytes(body))
        return out

    return tamper


@pytest.mark.parametrize("size", [2, 3])
def test_invalid_welcome_recovers_the_member(size: int) -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in range(10, 10 * size, 10):
        net.connect(uid)
        net.run()
    victim: list[int] = []
    net.tamper = _break_first(OP_WELCOME, victim)
    net.connect(10 * size)
    net.run()
    assert victim == [10 * size]
    assert net.members[victim[0]].recoveries == 1
    assert [o.user_id for o in net.ops(OP_WELCOME)].count(victim[0]) == 2
    net.members[victim[0]].recoveries = 0
    assert_converged(net)


def test_invalid_commit_recovers_an_established_member() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20, 30):
        net.connect(uid)
        net.run()
    victim: list[int] = []
    net.tamper = _break_first(OP_ANNOUNCE_COMMIT, victim)
    net.connect(40)
    net.run()
    assert len(victim) == 1 and net.members[victim[0]].recoveries == 1
    # The victim was removed from its old leaf and welcomed again.
    assert OP_INVALID_COMMIT_WELCOME not in [o.opcode for o in net.sent]  # op 31 only travels upward
    assert victim[0] in [o.user_id for o in net.ops(OP_WELCOME)]
    net.members[victim[0]].recoveries = 0
    assert_converged(net)


def test_invalid_welcome_at_group_creation() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    victim: list[int] = []
    net.tamper = _break_first(OP_WELCOME, victim)
    net.connect(10)
    net.connect(20)
    net.run()
    assert len(victim) == 1 and net.members[victim[0]].recoveries == 1
    net.members[victim[0]].recoveries = 0
    assert_converged(net)


def test_protocol_version_zero_is_plain_opus() -> None:
    room = DaveRoom(CHANNEL, protocol_version=0)
    member = SimulatedMember(10, CHANNEL, protocol_version=0)
    assert room.join(10) == []
    assert member.session is None and not member.ready
    frame = opus_frame(1)
    assert member.encrypt_opus(frame) == frame


def test_key_package_must_name_its_sender() -> None:
    room = DaveRoom(CHANNEL)
    room.join(10)
    with pytest.raises(ValueError, match="for user 20"):
        room.on_key_package(10, SimulatedMember(20, CHANNEL).key_package())
    with pytest.raises(ValueError, match="malformed"):
        room.on_key_package(10, b"\x00\x01\x00\x02")
    with pytest.raises(ValueError, match="before joining"):
        room.on_key_package(30, SimulatedMember(30, CHANNEL).key_package())


def _proposal_count(out: DaveOut) -> int:
    reader = mls.Reader(out.payload[1:])
    body = mls.Reader(reader.vec())
    count = 0
    while not body.done:
        body.pos += mls.parse_public_message(body.data, body.pos).length
        count += 1
    return count


def test_leave_while_other_adds_are_in_flight_keeps_the_add() -> None:
    """davey's commit after a revoke lacks its Welcome, so the room never revokes an Add while other Adds remain."""
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20):
        net.connect(uid)
    net.run()
    for uid in (50, 30, 40):
        net.connect(uid)
    for uid in (50, 30, 40):  # 50's Add is in flight when 30's and 40's key packages arrive
        net.deliver("up", uid)
    while not (net.ops(OP_PROPOSALS) and _proposal_count(net.ops(OP_PROPOSALS)[-1]) == 2):
        assert net.step()
    assert room.epoch == 2
    net.disconnect(40)
    net.run()
    assert not [o for o in net.ops(OP_PROPOSALS) if o.payload[0] == 1]
    # The commit added 30 and the departed 40; the next one removed 40's leaf.
    assert room.epoch == 4
    assert set(room.leaves[:2]) == {10, 20} and room.leaves[2:] == (50, 30)
    assert_converged(net)


@pytest.mark.parametrize("seed", range(12))
def test_random_interleavings_of_joins_and_leaves(seed: int) -> None:
    """Joins, reconnects, leaves and broken commits/Welcomes land at random points; the group always converges."""
    rng = random.Random(seed)
    room = DaveRoom(CHANNEL)
    net = Net(room, seed=seed)

    def tamper(out: DaveOut) -> DaveOut:
        if out.opcode in (OP_WELCOME, OP_ANNOUNCE_COMMIT) and rng.random() < 0.1:
            body = bytearray(out.payload)
            body[-5] ^= 0xFF
            return DaveOut(out.user_id, out.opcode, bytes(body))
        return out

    net.tamper = tamper
    next_uid = 100
    for _ in range(10):
        roll = rng.random()
        if len(net.members) < 2 or (roll < 0.5 and len(net.members) < 6):
            net.connect(next_uid)
            next_uid += 1
        elif roll < 0.7:
            uid = rng.choice(sorted(net.members))
            net.disconnect(uid)
            net.connect(uid)  # the same user reconnects with a fresh session
        else:
            net.disconnect(rng.choice(sorted(net.members)))
        for _ in range(rng.randrange(0, 25)):
            if not net.step():
                break
    while len(net.members) < 2:
        net.connect(next_uid)
        next_uid += 1
    net.tamper = None
    net.run()
    for m in net.members.values():
        m.recoveries = 0  # broken messages were injected on purpose
    assert_converged(net)


def test_prepare_epoch_one_makes_a_member_rejoin_with_a_fresh_session() -> None:
    """Op 24 epoch 1 (discord.py: reinit_dave_session) sends a new key package; the room re-adds the member."""
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20, 30):
        net.connect(uid)
        net.run()
    epoch, leaves = room.epoch, room.leaves
    replies = net.members[20].handle(DaveOut(20, OP_PREPARE_EPOCH, {"epoch": 1, "protocol_version": 1}))
    assert [op for op, _ in replies] == [OP_KEY_PACKAGE]
    assert not net.members[20].ready
    net.up[20].extend(replies)
    net.run()
    assert room.epoch == epoch + 1  # one commit: Remove of the old leaf + Add into that same leaf
    assert room.leaves == leaves
    assert_converged(net)


def test_prepare_and_execute_transition_follow_discord_py() -> None:
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20):
        net.connect(uid)
    net.run()
    member = net.members[10]
    # Transition id 0 executes at once and is not acknowledged.
    assert member.handle(DaveOut(10, OP_PREPARE_TRANSITION, {"transition_id": 0, "protocol_version": 1})) == []
    assert member.pending_transitions == {}
    # A downgrade to version 0: ready answer, then plain Opus once executed.
    reply = member.handle(DaveOut(10, OP_PREPARE_TRANSITION, {"transition_id": 7, "protocol_version": 0}))
    assert reply == [(OP_TRANSITION_READY, {"transition_id": 7})]
    assert not member.can_send and member.ready
    member.handle(DaveOut(10, OP_EXECUTE_TRANSITION, {"transition_id": 7}))
    assert member.can_send and not member.ready and member.downgraded
    frame = opus_frame(3)
    assert member.encrypt_opus(frame) == frame
    # Executing an unknown transition changes nothing (discord.py only warns).
    member.handle(DaveOut(10, OP_EXECUTE_TRANSITION, {"transition_id": 99}))
    assert member.protocol_version == 0


def test_join_without_leave_replaces_the_old_session() -> None:
    """A reconnect may reach the room before the old socket's leave: the new session takes over."""
    room = DaveRoom(CHANNEL)
    net = Net(room)
    for uid in (10, 20, 30):
        net.connect(uid)
        net.run()
    leaves = room.leaves
    del net.members[20], net.down[20], net.up[20]  # the old socket is gone without a leave
    net.connect(20)
    net.run()
    assert room.leaves == leaves  # removed and re-added into its own leaf
    assert_converged(net)
