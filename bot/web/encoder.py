"""Encode jobs: one per target file, shared by everyone who asks for it, run on
the encoder's own low-priority thread.

Encoding must never take CPU from live recordings. The recording engine has
its own worker threads (``sinks.worker.WorkerPool``); encodes never run
there, nor in the web server's export pool, but on this module's bounded pool
(one thread by default). Each of its threads lowers its own scheduling
priority to nice 19 on start (Linux schedules threads individually, so
``setpriority`` on the thread id affects that thread only): when the CPU is
contended, the recording workers and the socket reader win. The GIL is not a
contender worth fearing: libsndfile's encoders run in C through cffi, which
releases the GIL for the call, and the Python between blocks of 65,536
frames is a few function calls.

Two requests for the same file get the same :class:`EncodeJob`; a finished
file is kept next to the recording (deleted with it by retention), so asking
again costs a ``stat``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bot.web.encode import Progress, Wanted, fresh

__all__ = ["ENCODE_NICE", "EncodeJob", "Encoder"]

_log = logging.getLogger(__name__)

#: The niceness encode threads run at: the lowest priority there is.
ENCODE_NICE = 19


def _lower_priority(nice: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError) as exc:  # not Linux, or a sandbox that forbids it: encode anyway
        _log.info("encode thread keeps its priority: %s", exc)


class EncodeJob:
    """One file being made. ``future`` resolves to the target path (or its error);
    ``progress`` goes from 0 to 1."""

    __slots__ = ("target", "future", "progress")

    def __init__(self, target: Path) -> None:
        self.target = target
        self.future: concurrent.futures.Future[Path] = concurrent.futures.Future()
        self.progress = 0.0

    def _set_progress(self, fraction: float) -> None:
        self.progress = fraction


class Encoder:
    """Runs encode jobs on ``threads`` threads of their own at niceness ``nice``;
    each finished job logs ``encoded <recording>/<file>`` once."""

    __slots__ = ("_executor", "_jobs", "_lock")

    def __init__(self, threads: int = 1, nice: int = ENCODE_NICE) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="encode", initializer=_lower_priority, initargs=(nice,))
        self._jobs: dict[Path, EncodeJob] = {}
        self._lock = threading.Lock()

    def job(self, target: Path, encode: Callable[[Path, Progress], None]) -> EncodeJob:
        """The job making ``target``: the one under way, or a new one running
        ``encode(target, progress)`` (which writes the file atomically)."""
        with self._lock:
            running = self._jobs.get(target)
            if running is not None:
                return running
            job = self._jobs[target] = EncodeJob(target)
        try:
            queued = self._executor.submit(self._run, job, encode)
        except RuntimeError as exc:  # shut down: the bot is stopping
            self._finish(job, None, exc)
            return job
        # A job cancelled in the queue by shutdown() must still answer whoever waits on it.
        queued.add_done_callback(lambda f: f.cancelled() and self._finish(job, None, RuntimeError("encoder stopped")))
        return job

    def missing(self, wanted: list[Wanted]) -> list[EncodeJob]:
        """The jobs making whatever of ``wanted`` is not there or older than its sources."""
        return [self.job(target, encode) for target, sources, encode in wanted if not fresh(target, sources)]

    def _run(self, job: EncodeJob, encode: Callable[[Path, Progress], None]) -> None:
        started = time.monotonic()
        try:
            encode(job.target, job._set_progress)
        except BaseException as exc:  # handed to whoever waits; logged once here
            _log.warning("encoding %s failed: %s: %s", job.target.name, type(exc).__name__, exc)
            self._finish(job, None, exc)
            return
        _log.info("encoded %s/%s in %.1f s", job.target.parent.name, job.target.name, time.monotonic() - started)
        self._finish(job, job.target, None)

    def _finish(self, job: EncodeJob, result: Path | None, exc: BaseException | None) -> None:
        with self._lock:
            self._jobs.pop(job.target, None)
        job.progress = 1.0
        if exc is not None:
            job.future.set_exception(exc)
        else:
            assert result is not None
            job.future.set_result(result)

    def shutdown(self) -> None:
        """Stop taking jobs; queued ones are cancelled, a running one finishes its file."""
        self._executor.shutdown(wait=False, cancel_futures=True)
