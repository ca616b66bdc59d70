"""Datagrams read with the kernel's arrival time: real UDP sockets on loopback."""

from __future__ import annotations

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
