"""Reading a UDP datagram together with the time the kernel received it.

With ``SO_TIMESTAMPNS`` on, Linux attaches each datagram's arrival time to it.
A datagram's place in the recording is its arrival time, so the reader may
let datagrams gather in the socket buffer and read them in batches without
moving any of them: the time read here is the kernel's, not the reader's.

:class:`StampedReceiver` calls libc ``recvmsg`` through ctypes' ``PyDLL``,
which keeps the GIL: the sockets are non-blocking, so the call never waits,
and ``socket.recvmsg`` would release and take back the GIL for every
datagram, handing it to a recording worker each time.

The kernel stamps on the wall clock (CLOCK_REALTIME), which NTP, a VM resume
or ``date -s`` can step; the stamps are turned into monotonic time with an
offset measured once per batch. A step between a datagram's arrival and that
measurement would move the datagram by the step (seconds into the future or
the past, and a track re-anchored there loses as many seconds). So an arrival
time is never later than the monotonic clock's now, and after a step the
datagrams still stamped on the old wall clock are converted with the old
offset (see :meth:`StampedReceiver.arrival`).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Final

__all__ = ("StampedReceiver", "enable_timestamps")

_log = logging.getLogger(__name__)

#: SO_TIMESTAMPNS and its control message type SCM_TIMESTAMPNS (Linux, asm-generic).
_SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)
_SCM_TIMESTAMPNS: Final = _SO_TIMESTAMPNS
_MSG_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0x40)
#: One cmsghdr (length, level, type) followed by a struct timespec (seconds, nanoseconds).
_STAMP: Final = struct.Struct("@Qiiqq")
_CONTROL_SIZE: Final = 64
_AGAIN: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
#: Two monotonic reads further apart than this were preempted between: read again.
_CALIBRATION_SPREAD_NS: Final = 20_000
_CALIBRATION_TRIES: Final = 3
#: An offset that moved more than this since the last calibration was stepped,
#: not slewed (NTP slews at most 0.5 ms/s; batches are at most 30 s apart).
_STEP_NS: Final = 50_000_000


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


def _recvmsg_binding() -> ctypes._CFuncPtr:
    function = ctypes.PyDLL(None, use_errno=True).recvmsg
    # No argtypes: called with (int, byref(msghdr), int), which ctypes passes as
    # they are; converters would cost a third of the call.
    function.restype = ctypes.c_ssize_t
    return function


_recvmsg = _recvmsg_binding()


def enable_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp every datagram `sock` receives; False if it refused.

    Linux switches its receive timestamping on for the whole system only
    when the first socket asks, and does so a moment later (deferred work);
    datagrams that arrive meanwhile get the time they are read instead. So
    ask as soon as a socket exists, and keep one socket asking for the life
    of the process (the reader hub's wake-up socket does), lest a voice
    reconnect, closing the last stamped socket, switch it off and on again.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError as exc:
        _log.warning("no kernel arrival times on the voice socket (%s): the reader's clock is used", exc)
        return False
    return True


class StampedReceiver:
    """Reads datagrams with their arrival time on ``time.monotonic()``'s clock.

    One instance per reading thread: it owns one datagram buffer and one
    control buffer, reused for every call. ``monotonic_ns`` and ``realtime_ns``
    are the clocks (CLOCK_MONOTONIC and the kernel stamps' CLOCK_REALTIME).
    """

    def __init__(self, size: int, *, monotonic_ns: Callable[[], int] = time.monotonic_ns,
                 realtime_ns: Callable[[], int] = time.time_ns) -> None:
        self._data = ctypes.create_string_buffer(size)
        self._control = ctypes.create_string_buffer(_CONTROL_SIZE)
        self._iov = _IoVec(ctypes.cast(self._data, ctypes.c_void_p), size)
        self._header = _MsgHdr()
        self._header.msg_iov = ctypes.pointer(self._iov)
        self._header.msg_iovlen = 1
        self._header.msg_control = ctypes.cast(self._control, ctypes.c_void_p)
        self._header_ref = ctypes.byref(self._header)
        self._data_view = memoryview(self._data).cast("B")
        self._monotonic_ns = monotonic_ns
        self._realtime_ns = realtime_ns
        #: Nanoseconds to subtract from a CLOCK_REALTIME stamp to get CLOCK_MONOTONIC.
        self._offset_ns = 0
        #: Monotonic time of the last calibration; None before the first.
        self._calibrated_ns: int | None = None
        #: The offset before a step seen by the last calibration, else None.
        self._stepped_from_ns: int | None = None
        #: Converted stamps up to this (ns, monotonic) need no check: the last
        #: calibration's time, or -1 while a step is being corrected.
        self._trusted_until_ns = -1
        #: Wall-clock steps seen.
        self.steps = 0

    def calibrate(self) -> None:
        """Measure the realtime-to-monotonic offset now (once per batch; it moves only with clock steps).

        The realtime clock is read between two monotonic reads, again if the
        thread was preempted between them: the pair would be off by the pause,
        and every datagram of the batch with it.
        """
        monotonic_ns, realtime_ns = self._monotonic_ns, self._realtime_ns
        for _ in range(_CALIBRATION_TRIES):
            before = monotonic_ns()
            real = realtime_ns()
            after = monotonic_ns()
            if after - before <= _CALIBRATION_SPREAD_NS:
                break
        offset = real - (before + after) // 2
        previous = self._offset_ns
        self._stepped_from_ns = None
        if self._calibrated_ns is not None and abs(offset - previous) > _STEP_NS:
            # Datagrams queued before the step carry stamps on the old wall clock.
            self._stepped_from_ns = previous
            self.steps += 1
            _log.warning("the wall clock stepped by %+.3f s; voice arrival times corrected",
                         (offset - previous) / 1e9)
        self._offset_ns = offset
        self._calibrated_ns = after
        self._trusted_until_ns = after if self._stepped_from_ns is None else -1

    def arrival(self, stamp_ns: int) -> float:
        """A CLOCK_REALTIME kernel stamp as seconds on ``time.monotonic()``'s clock.

        Never later than the monotonic clock's now: a stamp only ever comes from
        the past. After a step, of the two conversions (old and new offset) the
        later one not in the future is taken: a datagram stamped before the step
        reads as future with the new offset after a backward step, and as a
        step too early after a forward one, where the old offset's reading is
        its arrival and still lies behind now.
        """
        arrival = stamp_ns - self._offset_ns
        if arrival <= self._trusted_until_ns:
            return arrival / 1e9  # came before this batch's calibration, no step: nothing to doubt
        stepped_from = self._stepped_from_ns
        now = self._monotonic_ns()
        if stepped_from is not None:
            before_step = stamp_ns - stepped_from
            if arrival > now or (arrival < before_step <= now):
                arrival = before_step
        return min(arrival, now) / 1e9

    def receive(self, fd: int) -> tuple[bytes, float] | None:
        """The next datagram of socket `fd` and its arrival time, or None when none is queued.

        Datagrams without a kernel stamp (queued before stamping was enabled)
        get the time they are read. Raises OSError for errors other than
        "nothing to read".
        """
        header = self._header
        header.msg_controllen = _CONTROL_SIZE
        size = _recvmsg(fd, self._header_ref, _MSG_DONTWAIT)
        if size < 0:
            code = ctypes.get_errno()
            if code in _AGAIN:
                return None
            raise OSError(code, errno.errorcode.get(code, "recvmsg failed"))
        data = self._data_view[:size].tobytes()
        if header.msg_controllen >= _STAMP.size:
            _, level, kind, seconds, nanoseconds = _STAMP.unpack_from(self._control)
            if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS:
                stamp = seconds * 1_000_000_000 + nanoseconds
                arrival = stamp - self._offset_ns
                if arrival <= self._trusted_until_ns:  # inline fast path of arrival()
                    return data, arrival / 1e9
                return data, self.arrival(stamp)
        return data, self._monotonic_ns() / 1e9
