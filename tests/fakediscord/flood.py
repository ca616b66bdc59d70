"""A flood of hostile datagrams from the voice server's own UDP socket, for a scenario's "flood" event.

Each 20 ms slot :class:`GarbageFlood` sends its share of ``rate`` datagrams
per second to every client, cycling through :data:`KINDS`, and counts what it
sent per kind. Every kind has exactly one receive-side fate (:data:`FATES`),
so a test can check the client's counters datagram for datagram:

* ``random``: noise with RTP version 1 (not RTP);
* ``short``: 1-11 bytes (shorter than an RTP header);
* ``truncated``: a valid Opus RTP header and too few bytes for tag and nonce;
* ``bad_tag``: a real speaker's SSRC, sealed with the client's key, one tag byte flipped;
* ``rtcp``: a sealed RTCP sender report;
* ``payload_type``: sealed RTP of a payload type other than Opus;
* ``unmapped``: sealed Opus RTP of SSRCs nobody announced (held, then dropped);
* ``replay``: a real speaker's datagram sent again byte for byte (a copy).
"""

from __future__ import annotations

import os
import random
import struct
from collections import Counter, deque
from typing import Final

from .media import Address, MediaServer
from .room import VoiceRoom
from .rtp import OPUS_PAYLOAD_TYPE, rtcp_sender_report

__all__ = ["FATES", "KINDS", "UNMAPPED_SSRCS", "GarbageFlood"]

KINDS: Final = ("random", "short", "truncated", "bad_tag", "rtcp", "payload_type", "unmapped", "replay")
#: The receiver counters each kind must end in (several for kinds whose fate depends on timing).
FATES: Final = {
    "random": ("not_rtp",),
    "short": ("too_short",),
    "truncated": ("truncated",),
    "bad_tag": ("auth_failed",),
    "rtcp": ("rtcp",),
    "payload_type": ("not_opus",),
    # Held until close (or pushed out of the bounded hold by newer ones).
    "unmapped": ("unmapped_at_close", "unmapped_overflow"),
    # A copy within the duplicate window, or one older than it.
    "replay": ("duplicate", "stale"),
}
#: SSRCs the flood's ``unmapped`` packets use; no speaker ever gets one.
UNMAPPED_SSRCS: Final = tuple(0x0BAD_0000 + k for k in range(8))
#: Real datagrams remembered for replays: well within the duplicate window per speaker.
_REPLAY_POOL: Final = 60
_OTHER_PAYLOAD_TYPES: Final = (0, 13, 96, 100, 111, 127)


class GarbageFlood:
    """Sends ``rate`` hostile datagrams per second to a room's clients until ``until`` (scenario seconds).

    :param media: the voice server's UDP socket (its ``recent`` datagrams feed the replays).
    :param rate: datagrams per second, per client.
    :param until: scenario time at which the flood stops.
    :param rng: the scenario's seeded generator.
    """

    def __init__(self, media: MediaServer, rate: int, until: float, rng: random.Random) -> None:
        self.media = media
        self.rate = rate
        self.until = until
        #: Datagrams sent, per kind (summed over clients).
        self.sent: Counter[str] = Counter()
        self._rng = rng
        self._owed = 0.0
        self._next_kind = 0
        self._seen_sent = media.stats.sent
        self._real: deque[tuple[bytes, Address]] = deque(maxlen=_REPLAY_POOL)

    def tick(self, room: VoiceRoom, t: float) -> None:
        """Send this 20 ms slot's datagrams (``t`` is the scenario time)."""
        self._collect_real()
        if t >= self.until:
            return
        self._owed += self.rate * 0.020
        speakers = [ssrc for ssrc in room.speakers.values() if ssrc is not None]
        while self._owed >= 1:
            self._owed -= 1
            kind = KINDS[self._next_kind]
            self._next_kind = (self._next_kind + 1) % len(KINDS)
            if kind == "replay":
                if self._real:
                    data, address = self._real[self._rng.randrange(len(self._real))]
                    if self.media.send(data, address):
                        self.sent[kind] += 1
                continue
            for client in list(room.clients.values()):
                clear, secret = self._forge(kind, speakers)
                if kind == "bad_tag":
                    cipher = getattr(client, "cipher", None)
                    if cipher is None:
                        continue
                    sealed = bytearray(cipher.seal(clear, secret))
                    sealed[-5] ^= 0x01  # the tag's last byte (the 4-byte nonce counter follows it)
                    clear, secret = bytes(sealed), None
                if client.send_datagram(clear, secret):
                    self.sent[kind] += 1
        self._seen_sent = self.media.stats.sent

    def _collect_real(self) -> None:
        """Remember the speakers' datagrams sent since the last slot (the flood's own were counted out)."""
        new = self.media.stats.sent - self._seen_sent
        if new > 0:
            recent = list(self.media.recent)
            self._real.extend(recent[-min(new, len(recent)):])
        self._seen_sent = self.media.stats.sent

    def _forge(self, kind: str, speakers: list[int]) -> tuple[bytes, bytes | None]:
        """(clear, secret) for one datagram; ``secret`` is sealed with the client's key, None sends ``clear`` as is."""
        rng = self._rng
        if kind == "random":
            return bytes([0x40 | rng.randrange(64)]) + os.urandom(rng.randrange(11, 200)), None
        if kind == "short":
            return os.urandom(rng.randrange(1, 12)), None
        if kind == "truncated":
            return _rtp_header(OPUS_PAYLOAD_TYPE, rng.choice(UNMAPPED_SSRCS), rng) + os.urandom(rng.randrange(20)), None
        if kind == "bad_tag":
            return _rtp_header(OPUS_PAYLOAD_TYPE, rng.choice(speakers or UNMAPPED_SSRCS), rng), os.urandom(40)
        if kind == "rtcp":
            return rtcp_sender_report(rng.choice(speakers or UNMAPPED_SSRCS), rng.getrandbits(64),
                                      rng.getrandbits(32), rng.randrange(1000), rng.randrange(10**5))
        if kind == "payload_type":
            return _rtp_header(rng.choice(_OTHER_PAYLOAD_TYPES), rng.choice(speakers or UNMAPPED_SSRCS), rng), os.urandom(60)
        return _rtp_header(OPUS_PAYLOAD_TYPE, rng.choice(UNMAPPED_SSRCS), rng), os.urandom(60)


def _rtp_header(payload_type: int, ssrc: int, rng: random.Random) -> bytes:
    return struct.pack(">BBHII", 0x80, payload_type, rng.randrange(1 << 16), rng.getrandbits(32), ssrc)
