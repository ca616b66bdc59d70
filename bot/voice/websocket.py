"""discord.py 2.7.1's voice websocket with an IP discovery that listens before it asks.

discord.py sends the discovery request and only then registers the socket
listener that waits for the reply. On the first connect nothing else listens,
so the socket reader is idle and the reply waits in the socket until the
listener starts it. On a reconnect during a recording the reader is already
running for the receive layer: on loopback, or any fast network, it can read
the reply before discord.py's listener is registered. The reply then went
only to the recorder, discovery waited forever and the reconnect hung until
its 30 s timeout, after which discord.py kept polling a websocket that never
became ready (the recording stayed deaf).
"""

from __future__ import annotations

import asyncio
import logging
import struct

from discord.gateway import DiscordVoiceWebSocket

from .rtp import IP_DISCOVERY_REPLY, IP_DISCOVERY_REQUEST, IP_DISCOVERY_SIZE

__all__ = ("ListeningVoiceWebSocket",)

_log = logging.getLogger(__name__)


class ListeningVoiceWebSocket(DiscordVoiceWebSocket):
    """discord.py's voice websocket; only :meth:`discover_ip` differs."""

    async def discover_ip(self) -> tuple[str, int]:
        """Ask the voice server for our public address, listening for the reply first."""
        state = self._connection
        packet = bytearray(IP_DISCOVERY_SIZE)
        struct.pack_into(">HHI", packet, 0, IP_DISCOVERY_REQUEST, IP_DISCOVERY_SIZE - 4, state.ssrc)
        reply: asyncio.Future[bytes] = self.loop.create_future()

        def settle(data: bytes) -> None:
            if not reply.done():
                reply.set_result(data)

        def on_packet(data: bytes) -> None:
            if len(data) == IP_DISCOVERY_SIZE and data[1] == IP_DISCOVERY_REPLY:
                self.loop.call_soon_threadsafe(settle, data)

        reply.add_done_callback(lambda _: state.remove_socket_listener(on_packet))
        state.add_socket_listener(on_packet)
        _log.debug("sending the IP discovery request")
        try:
            await self.loop.sock_sendall(state.socket, packet)
            data = await reply
        finally:
            if not reply.done():
                reply.cancel()  # removes the listener
        # The address is ASCII from byte 8 to the first NUL; the port is the last two bytes.
        ip = data[8:data.index(0, 8)].decode("ascii")
        port = struct.unpack_from(">H", data, len(data) - 2)[0]
        _log.debug("IP discovery: %s port %d", ip, port)
        return ip, port
