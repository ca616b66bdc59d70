"""A settled DAVE group of simulated members, driven in memory through the fake voice server's DaveRoom."""

from __future__ import annotations

from collections import deque

from tests.fakediscord.dave import (
    OP_COMMIT_WELCOME,
    OP_INVALID_COMMIT_WELCOME,
    OP_KEY_PACKAGE,
    OP_TRANSITION_READY,
    DaveOut,
    DaveRoom,
    SimulatedMember,
)

CHANNEL_ID = 1_234_567_890_123_456_789


def settled_group(user_ids: list[int], channel_id: int = CHANNEL_ID) -> dict[int, SimulatedMember]:
    """Join every user to one room and deliver the DAVE traffic until it settles."""
    room = DaveRoom(channel_id)
    members = {uid: SimulatedMember(uid, channel_id) for uid in user_ids}
    down: deque[DaveOut] = deque()
    up: deque[tuple[int, int, object]] = deque()
    for uid, member in members.items():
        up.append((uid, OP_KEY_PACKAGE, member.key_package()))
        down.extend(room.join(uid))
    for _ in range(10_000):
        if down:
            out = down.popleft()
            up.extend((out.user_id, op, payload) for op, payload in members[out.user_id].handle(out))
        elif up:
            uid, op, payload = up.popleft()
            if op == OP_KEY_PACKAGE:
                down.extend(room.on_key_package(uid, payload))  # type: ignore[arg-type]
            elif op == OP_COMMIT_WELCOME:
                down.extend(room.on_commit_welcome(uid, payload))  # type: ignore[arg-type]
            elif op == OP_TRANSITION_READY:
                down.extend(room.on_transition_ready(uid, payload["transition_id"]))  # type: ignore[index]
            elif op == OP_INVALID_COMMIT_WELCOME:
                down.extend(room.on_invalid_commit_welcome(uid, payload["transition_id"]))  # type: ignore[index]
        else:
            break
    if not room.settled or not all(m.ready and m.can_send for m in members.values()):
        raise RuntimeError("DAVE group did not settle")
    return members
