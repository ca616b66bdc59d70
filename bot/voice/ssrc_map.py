"""SSRC -> user id map, with a bounded hold for audio that outruns SPEAKING.

Two threads touch this object, with a strict split of who writes what:

* the event loop (voice websocket hook) writes the map: :meth:`SsrcMap.bind`
  on SPEAKING (op 5) and :meth:`SsrcMap.forget_user` on CLIENT_DISCONNECT
  (op 13). Each is a single dict store/delete plus an int store, atomic under
  the GIL; the loop never touches the held packets.
* the socket thread reads the map (:meth:`SsrcMap.lookup`) and alone owns the
  held packets (:meth:`SsrcMap.hold`, :meth:`SsrcMap.release`,
  :meth:`SsrcMap.drain`).

So releasing held packets cannot race the map update: the loop only flips
``_version``; the socket thread notices the change on its next datagram, takes
out every held queue whose SSRC is now mapped, and releases it *before* the
packet in hand, in arrival order. ``_version`` is read before the map is scanned, so a binding
that lands mid-scan is seen by the next :meth:`SsrcMap.release`; and a packet
whose SSRC is found mapped while some of its packets are still held first
takes those out (:meth:`SsrcMap.take`). Nothing on the socket thread waits for the loop. Anyone else
who wants the held packets (the final flush on stop) must first make sure the
socket thread is no longer inside the receiver (the receiver's lock does).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import Generic, TypeVar

__all__ = ("SsrcMap",)

_log = logging.getLogger(__name__)

T = TypeVar("T")


class SsrcMap(Generic[T]):
    """Maps SSRCs to user ids and holds items of SSRCs not mapped yet.

    :param hold_per_ssrc: items kept per unmapped SSRC (100 = 2 s of 20 ms
        frames); older ones are dropped first.
    :param max_unmapped: unmapped SSRCs tracked at once; when a new one comes
        the one seen first is evicted with everything it held. Joining a
        channel where hundreds already talk, all of their audio outruns their
        SPEAKING ops at once (32 lost packets at 300 speakers). Held frames
        have passed transport authentication (only the voice server seals
        them), so this bounds memory, not an attacker: at most about 25 MB.
    """

    __slots__ = ("_users", "_version", "_seen_version", "_held", "_hold_per_ssrc", "_max_unmapped", "dropped", "held")

    def __init__(self, *, hold_per_ssrc: int = 100, max_unmapped: int = 512) -> None:
        self._users: dict[int, int] = {}
        self._version = 0
        self._seen_version = 0
        self._held: OrderedDict[int, deque[T]] = OrderedDict()
        self._hold_per_ssrc = hold_per_ssrc
        self._max_unmapped = max_unmapped
        #: Held items pushed out by the bounds (socket thread only).
        self.dropped = 0
        #: Items held right now (socket thread only).
        self.held = 0

    # -- event loop side -------------------------------------------------

    def bind(self, ssrc: int, user_id: int) -> None:
        """Record that ``ssrc`` carries ``user_id``'s audio (SPEAKING, op 5).

        A reconnecting user arrives with a new SSRC and keeps the same user id,
        so both SSRCs feed the same track.
        """
        if self._users.get(ssrc) != user_id:
            self._users[ssrc] = user_id
            self._version += 1

    def forget_user(self, user_id: int) -> None:
        """Drop every SSRC of a user who left (CLIENT_DISCONNECT, op 13)."""
        for ssrc in [s for s, u in self._users.items() if u == user_id]:
            self._users.pop(ssrc, None)

    # -- socket thread side ----------------------------------------------

    def lookup(self, ssrc: int) -> int | None:
        """The user id for ``ssrc``, or ``None`` while it is unmapped (safe from any thread)."""
        return self._users.get(ssrc)

    def hold(self, ssrc: int, item: T) -> None:
        """Keep ``item`` of an unmapped SSRC until :meth:`release` hands it back."""
        queue = self._held.get(ssrc)
        if queue is None:
            if len(self._held) >= self._max_unmapped:
                _, evicted = self._held.popitem(last=False)
                self.dropped += len(evicted)
                self.held -= len(evicted)
            queue = self._held[ssrc] = deque()
        elif len(queue) >= self._hold_per_ssrc:
            queue.popleft()
            self.dropped += 1
            self.held -= 1
        queue.append(item)
        self.held += 1

    def release(self) -> list[tuple[int, T]]:
        """Take out ``(user_id, item)`` for held items whose SSRC got mapped since the last call.

        O(1) when no mapping changed; items of one SSRC come out in arrival order.
        """
        version = self._version
        if version == self._seen_version or not self._held:
            self._seen_version = version
            return []
        self._seen_version = version
        released: list[tuple[int, T]] = []
        for ssrc in list(self._held):
            user_id = self._users.get(ssrc)
            if user_id is not None:
                queue = self._held.pop(ssrc)
                self.held -= len(queue)
                _log.debug("releasing %d held packets of ssrc %d as user %d", len(queue), ssrc, user_id)
                released.extend((user_id, item) for item in queue)
        return released

    def take(self, ssrc: int) -> list[T]:
        """Take out everything held for ``ssrc``, oldest first.

        For the socket thread when it finds ``ssrc`` mapped while packets of it
        are still held (the binding landed between :meth:`release` and
        :meth:`lookup`): those must go out before the packet in hand.
        """
        queue = self._held.pop(ssrc, None)
        if queue is None:
            return []
        self.held -= len(queue)
        return list(queue)

    def drain(self) -> list[tuple[int | None, T]]:
        """Take out every held item with its user id, or ``None`` if still unmapped."""
        held, self._held = self._held, OrderedDict()
        self.held = 0
        return [(self._users.get(ssrc), item) for ssrc, queue in held.items() for item in queue]
