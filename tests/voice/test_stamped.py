"""Datagrams read with the kernel's arrival time: real UDP sockets on loopback."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from bot.voice.stamped import StampedReceiver, enable_timestamps


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    yield receiver, sender
    receiver.close()
    sender.close()


def test_arrival_is_when_the_kernel_got_it_not_when_it_was_read(pair: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = pair
    assert enable_timestamps(receiver)
    time.sleep(0.1)  # the kernel switches timestamping on a moment later (see enable_timestamps)
    sent = []
    for n in range(5):
        sent.append(time.monotonic())
        sender.send(bytes([n]) * (100 + n))
        time.sleep(0.03)
    time.sleep(0.2)  # the datagrams wait in the socket buffer, as behind a busy reader
    reader = StampedReceiver(2048)
    reader.calibrate()
    read_at = time.monotonic()
    got = [reader.receive(receiver.fileno()) for _ in range(5)]
    assert reader.receive(receiver.fileno()) is None
    for n, (received, sent_at) in enumerate(zip(got, sent)):
        assert received is not None
        data, arrival = received
        assert data == bytes([n]) * (100 + n)
        assert sent_at <= arrival + 0.0005 and arrival - sent_at < 0.01, (n, arrival - sent_at)
        assert read_at - arrival > 0.15


def test_without_stamps_the_arrival_is_the_read(pair: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = pair
    sender.send(b"late")
    time.sleep(0.1)
    reader = StampedReceiver(2048)
    before = time.monotonic()
    received = reader.receive(receiver.fileno())
    assert received is not None and received[0] == b"late" and received[1] >= before


def test_an_empty_datagram_and_a_bad_descriptor(pair: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = pair
    enable_timestamps(receiver)
    sender.send(b"")
    time.sleep(0.05)
    reader = StampedReceiver(2048)
    received = reader.receive(receiver.fileno())
    assert received is not None and received[0] == b""
    with pytest.raises(OSError):
        reader.receive(-1)


def _queued(sock: socket.socket) -> None:
    """Until a datagram waits in `sock`."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    assert poller.poll(10_000), "the datagram did not arrive"


@pytest.mark.parametrize("step", [-15.0, 15.0, -0.5, 3600.0])
def test_a_wall_clock_step_between_arrival_and_calibration(pair: tuple[socket.socket, socket.socket],
                                                            step: float) -> None:
    """The wall clock steps (NTP, a VM resume, ``date -s``) after the kernel stamped a
    datagram and before the reader measured its offset: the arrival stays where it
    was, and never later than now. Back (negative), the old code put it `step` into
    the future; forward, that far into the past."""
    receiver, sender = pair
    assert enable_timestamps(receiver)
    shift = [0]
    reader = StampedReceiver(2048, realtime_ns=lambda: time.time_ns() + shift[0])
    deadline = time.monotonic() + 10
    while True:  # stamping may come on a moment after it is asked for (see enable_timestamps)
        assert time.monotonic() < deadline, "the kernel never stamped a datagram"
        reader.calibrate()
        sender.send(b"probe")
        _queued(receiver)
        queued_at = time.monotonic()
        time.sleep(0.05)  # a gap between arrival and read, to tell a kernel stamp from the read time
        received = reader.receive(receiver.fileno())
        assert received is not None
        if received[1] <= queued_at:
            break

    reader.calibrate()  # the batch before the step
    sent_at = time.monotonic()
    sender.send(b"before the step")
    _queued(receiver)
    shift[0] = round(step * 1e9)  # the wall clock steps; the datagram keeps its old-clock stamp
    reader.calibrate()
    received = reader.receive(receiver.fileno())
    now = time.monotonic()
    assert received is not None and received[0] == b"before the step"
    arrival = received[1]
    assert arrival <= now, f"arrival {arrival - now:+.3f} s in the future"
    assert sent_at - 0.001 <= arrival <= now, f"arrival moved by {arrival - sent_at:+.3f} s"
    assert reader.steps == 1

    sender.send(b"after the step")  # stamped on the stepped clock... here the kernel's, unshifted
    _queued(receiver)
    received = reader.receive(receiver.fileno())
    assert received is not None and received[1] <= time.monotonic()


def test_an_arrival_is_never_later_than_now_even_without_a_known_step(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """The first calibration already sees the stepped clock: no old offset to go back to,
    but the arrival is still not in the future."""
    receiver, sender = pair
    assert enable_timestamps(receiver)
    reader = StampedReceiver(2048, realtime_ns=lambda: time.time_ns() - 15_000_000_000)
    sender.send(b"x")
    _queued(receiver)
    reader.calibrate()
    received = reader.receive(receiver.fileno())
    assert received is not None and received[1] <= time.monotonic()
