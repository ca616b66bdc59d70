"""The voice server's one UDP socket: IP discovery and media delivery.

discord.py *connects* its UDP socket to READY's ip:port, so every datagram a
client should receive must come from this very socket, sent to the address
the client revealed in its IP-discovery request.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from dataclasses import dataclass
from typing import Callable, Final

__all__ = ["DISCOVERY_SIZE", "MediaStats", "MediaServer", "discovery_request", "parse_discovery_reply"]

_log = logging.getLogger(__name__)

DISCOVERY_SIZE: Final = 74
_DISCOVERY_REQUEST: Final = 1
_DISCOVERY_REPLY: Final = 2
#: Sent datagrams kept in `MediaServer.recent`.
RECENT_SENT: Final = 512

Address = tuple[str, int]


def discovery_request(ssrc: int) -> bytes:
    """A client's IP-discovery request for `ssrc` (type 1, length 70)."""
    packet = bytearray(DISCOVERY_SIZE)
    struct.pack_into(">HHI", packet, 0, _DISCOVERY_REQUEST, 70, ssrc)
    return bytes(packet)


def discovery_reply(ssrc: int, address: Address) -> bytes:
    """The server's answer: type 2, the address ASCII from byte 8, the port in the last two bytes."""
    packet = bytearray(DISCOVERY_SIZE)
    struct.pack_into(">HHI", packet, 0, _DISCOVERY_REPLY, 70, ssrc)
    ip = address[0].encode("ascii")
    packet[8:8 + len(ip)] = ip
    struct.pack_into(">H", packet, DISCOVERY_SIZE - 2, address[1])
    return bytes(packet)


def parse_discovery_reply(packet: bytes) -> Address:
    """Read (ip, port) from a discovery reply, as discord.py does."""
    if len(packet) != DISCOVERY_SIZE or packet[1] != _DISCOVERY_REPLY:
        raise ValueError("not an IP discovery reply")
    ip = packet[8:packet.index(0, 8)].decode("ascii")
    return ip, struct.unpack_from(">H", packet, DISCOVERY_SIZE - 2)[0]


@dataclass(slots=True)
class MediaStats:
    """Counters of the UDP socket."""

    sent: int = 0
    silenced: int = 0
    discoveries: int = 0
    received: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: MediaServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._server._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # A client that went away makes the kernel report ICMP unreachable; that is normal here.
        _log.debug("UDP error: %s", exc)


class MediaServer:
    """One UDP socket on 127.0.0.1 for every voice connection of the fake.

    `on_discovery(ssrc, address)` is called for each IP-discovery request,
    after the reply is sent, so the voice server learns where the client is.
    """

    def __init__(self, on_discovery: Callable[[int, Address], None], host: str = "127.0.0.1") -> None:
        self._on_discovery = on_discovery
        self._host = host
        self._transport: asyncio.DatagramTransport | None = None
        self._quiet_until = 0.0
        self.stats = MediaStats()
        #: The last datagrams sent, with their address (a flood replays real ones from here).
        self.recent: deque[tuple[bytes, Address]] = deque(maxlen=RECENT_SENT)

    @property
    def port(self) -> int:
        """The bound UDP port."""
        if self._transport is None:
            raise RuntimeError("the media server is not started")
        return self._transport.get_extra_info("sockname")[1]

    async def start(self) -> None:
        """Bind the socket."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._host, 0))

    def stop(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def silence(self, seconds: float) -> None:
        """Drop all outgoing media for `seconds` (a network outage); discovery still answers."""
        self._quiet_until = asyncio.get_running_loop().time() + seconds

    def send(self, data: bytes, address: Address) -> bool:
        """Send one media datagram; False if it was swallowed by `silence()` or the socket is closed."""
        transport = self._transport
        if transport is None:
            return False
        if self._quiet_until and asyncio.get_running_loop().time() < self._quiet_until:
            self.stats.silenced += 1
            return False
        transport.sendto(data, address)
        self.stats.sent += 1
        self.recent.append((data, address))
        return True

    def _received(self, data: bytes, addr: Address) -> None:
        self.stats.received += 1
        if len(data) == DISCOVERY_SIZE and data[:4] == b"\x00\x01\x00\x46":
            ssrc = struct.unpack_from(">I", data, 4)[0]
            self.stats.discoveries += 1
            if self._transport is not None:
                self._transport.sendto(discovery_reply(ssrc, addr), addr)
            self._on_discovery(ssrc, addr)
        # Anything else is a client's own audio, RTCP or keepalives: the fake does not relay it.
