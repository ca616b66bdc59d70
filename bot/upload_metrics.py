"""The uploader's Prometheus figures, read from :meth:`Offloader.stats` at scrape time.

Registered only in a bot process with ``STORAGE_URL``: without an object
store nothing is uploaded and the families are absent (as they are on the
download front, which uploads nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.offload import FAILURE_REASONS, Offloader, UploadStats

__all__ = ["UploadCollector"]


class UploadCollector(Collector):
    """Uploads pending, done and failed in this process; register it in the process's registry."""

    def __init__(self, offloader: Offloader) -> None:
        self._offloader = offloader

    def describe(self) -> Iterable[Metric]:
        """The families, without reading the uploader (registering must not scrape)."""
        return list(self._families(UploadStats(0, 0, 0, {})))

    def collect(self) -> Iterable[Metric]:
        """Read the uploader's snapshot; called by ``/metrics`` on the event loop."""
        return list(self._families(self._offloader.stats()))

    @staticmethod
    def _families(stats: UploadStats) -> Iterator[Metric]:
        prefix = "voice_recorder_"
        pending = GaugeMetricFamily(prefix + "uploads_pending",
                                    "Closed recordings waiting for their upload to the object store (the one under "
                                    "way included), or for their local folder's removal after it")
        pending.add_metric([], stats.pending)
        yield pending
        uploaded = CounterMetricFamily(prefix + "uploads", "Recordings this process uploaded and verified in the "
                                                           "object store")
        uploaded.add_metric([], stats.uploaded)
        yield uploaded
        sent = CounterMetricFamily(prefix + "upload_bytes", "Bytes this process sent to the object store for them")
        sent.add_metric([], stats.bytes_sent)
        yield sent
        failures = CounterMetricFamily(prefix + "upload_failures",
                                       "Upload tries that failed (each is tried again later), by reason",
                                       labels=("reason",))
        for reason in FAILURE_REASONS:
            failures.add_metric([reason], stats.failures.get(reason, 0))
        yield failures
