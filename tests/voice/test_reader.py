"""BatchingSocketReader over real UDP sockets: every datagram to every callback, in order,
through callback errors and a socket replacement; stop ends the thread."""

from __future__ import annotations

import contextlib
import socket
import time
import types
from collections.abc import Callable, Iterator

import pytest

from bot.voice.reader import MAX_BATCH, BatchingSocketReader

TIMEOUT = 30.0


def _wake_and_close(sock: socket.socket) -> None:
    """What client._WakingSocket.close does: shutdown() wakes a select() on the socket."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


#: Where the test datagrams come from (the voice server, to discord.py's connected socket).
_SERVER = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_SERVER.bind(("127.0.0.1", 0))


def _udp() -> socket.socket:
    """A voice socket as discord.py has it: non-blocking, connected to the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.connect(_SERVER.getsockname())
    sock.setblocking(False)
    return sock


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def reader() -> Iterator[tuple[BatchingSocketReader, types.SimpleNamespace]]:
    state = types.SimpleNamespace(socket=_udp())
    reader = BatchingSocketReader(state)  # type: ignore[arg-type]
    reader.start()
    yield reader, state
    reader.stop()
    _wake_and_close(state.socket)
    reader.join(TIMEOUT)
    assert not reader.is_alive()


def _send(sock: socket.socket, payloads: list[bytes]) -> None:
    for payload in payloads:
        _SERVER.sendto(payload, sock.getsockname())


def test_every_datagram_reaches_every_callback_in_order(reader: tuple[BatchingSocketReader, types.SimpleNamespace],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    thread, state = reader
    first: list[bytes] = []
    second: list[bytes] = []

    def failing(data: bytes) -> None:
        first.append(data)
        if data.endswith(b"7"):
            raise RuntimeError("listener bug")

    thread.register(failing)
    thread.register(second.append)
    thread.resume()
    # More than one batch's worth, sent at once: the reader must read past MAX_BATCH.
    payloads = [b"datagram %d" % i for i in range(3 * MAX_BATCH)]
    _send(state.socket, payloads)
    _wait(lambda: len(second) == len(payloads), "every datagram")
    assert first == payloads and second == payloads
    assert sum("listener bug" in r.exc_text for r in caplog.records if r.exc_text) == len(
        [p for p in payloads if p.endswith(b"7")])


def test_replaced_socket_is_read_after_the_old_one_shuts_down(
        reader: tuple[BatchingSocketReader, types.SimpleNamespace]) -> None:
    thread, state = reader
    got: list[bytes] = []
    thread.register(got.append)
    thread.resume()
    _send(state.socket, [b"old"])
    _wait(lambda: got == [b"old"], "the first socket's datagram")
    old, state.socket = state.socket, _udp()
    _wake_and_close(old)
    _send(state.socket, [b"new"])
    _wait(lambda: b"new" in got, "the new socket's datagram")

