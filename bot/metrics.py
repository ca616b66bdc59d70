"""The bot's Prometheus figures about recording, read at scrape time.

Nothing on the packet path counts for Prometheus: :class:`RecordingCollector`
reads the typed snapshots the engine (:class:`sinks.EngineStats`) and the
receive layer (:class:`bot.voice.stats.ReceiveStats`) keep anyway, for every
recording in the registry, when ``/metrics`` is scraped. Counters must never go
back, so the final counts of each recording that leaves the registry are added
to the process's totals once (:meth:`RecordingCollector.ended`).

Every datagram the receive layer is fed ends in exactly one of: a packet given
to the engine (``packets_received``), held for now, dropped for a reason
(``packets_dropped{layer="receive"}``) or a decrypt failure
(``decrypt_failures``). The engine's own drops are ``layer="engine"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.registry import RecordingRegistry
from bot.session import RecordingSession
from bot.voice.stats import DROP_REASONS, RecordingStats

__all__ = ["RecordingCollector"]

#: Receive-layer reasons that are a failed transport decryption, not a drop.
_TRANSPORT_FAILURES = ("truncated", "auth_failed")
_RECEIVE_DROPS = tuple(r for r in DROP_REASONS if r not in _TRANSPORT_FAILURES and r != "sink_full")
#: The engine's drops: :class:`sinks.EngineStats` field -> reason label.
_ENGINE_DROPS = {"dropped": "queue_full", "late": "late", "duplicates": "duplicate", "decode_errors": "decode_error",
                 "invalid": "invalid", "discarded": "discarded", "untracked": "untracked"}

#: A counter's name and its labels, as sorted pairs.
_Key = tuple[str, tuple[tuple[str, str], ...]]


def _counts(stats: RecordingStats) -> Counter[_Key]:
    """Every counter one recording adds to the process's, keyed by name and labels."""
    receive, engine = stats.receive, stats.engine
    counts: Counter[_Key] = Counter({
        ("datagrams", ()): receive.datagrams,
        ("packets_received", ()): engine.received,
        ("packets_decoded", ()): engine.decoded,
        ("packets_lost", ()): engine.lost,
        ("bytes_written", ()): engine.bytes_written,
    })
    for reason in _RECEIVE_DROPS:
        counts["packets_dropped", (("layer", "receive"), ("reason", reason))] = getattr(receive, reason)
    for field, reason in _ENGINE_DROPS.items():
        counts["packets_dropped", (("layer", "engine"), ("reason", reason))] = getattr(engine, field)
    for reason in _TRANSPORT_FAILURES:
        counts["decrypt_failures", (("layer", "transport"), ("reason", reason))] = getattr(receive, reason)
    for reason, n in receive.dave_failures.items():
        counts["decrypt_failures", (("layer", "dave"), ("reason", reason.partition(":")[2]))] = n
    return counts


_COUNTERS = {
    "datagrams": ("UDP datagrams the voice receive layer was fed", ()),
    "packets_received": ("Voice packets given to the recording engine (accepted or dropped by it)", ()),
    "packets_decoded": ("Voice packets decoded and placed on a track", ()),
    "packets_lost": ("Voice packets never received (sequence gaps inside a stream)", ()),
    "packets_dropped": ("Datagrams and packets thrown away, by layer and reason", ("layer", "reason")),
    "decrypt_failures": ("Voice frames that could not be decrypted, by layer (transport, dave) and reason",
                         ("layer", "reason")),
    "bytes_written": ("Bytes of audio written to tracks", ()),
}


def _live(session: RecordingSession) -> bool:
    """Whether ``session`` has an engine and a voice connection to read (its start got that far)."""
    return session.sink is not None and session.voice is not None


class RecordingCollector(Collector):
    """Recording figures of one bot process: live recordings read at scrape time, plus
    the totals of those that ended. Register it in the process's registry and give
    :meth:`ended` to :meth:`RecordingRegistry.add_end_listener`."""

    def __init__(self, registry: RecordingRegistry) -> None:
        self._registry = registry
        self._ended: Counter[_Key] = Counter()
        self._recordings_ended = 0

    def ended(self, session: RecordingSession) -> None:
        """``session`` left the registry: its final counts join the totals (a start that
        failed before it had a recording adds its packets, but is no recording)."""
        if _live(session):
            self._ended.update(_counts(session.stats()))
            if session.recording is not None:
                self._recordings_ended += 1

    def describe(self) -> Iterable[Metric]:
        """The families without reading any recording (registering must not scrape)."""
        return list(self._families([], Counter()))

    def collect(self) -> Iterable[Metric]:
        """Read every live recording's snapshot; called by ``/metrics`` on the event loop."""
        live = [session.stats() for session in self._registry.sessions() if _live(session)]
        totals = Counter(self._ended)
        for stats in live:
            totals.update(_counts(stats))
        return list(self._families(live, totals))

    def _families(self, live: list[RecordingStats], totals: Counter[_Key]) -> Iterator[Metric]:
        prefix = "voice_recorder_"
        running = GaugeMetricFamily(prefix + "recordings_running", "Recordings running in this process")
        running.add_metric([], len(live))
        yield running
        ended = CounterMetricFamily(prefix + "recordings_ended", "Recordings this process stopped or suspended")
        ended.add_metric([], self._recordings_ended)
        yield ended
        speakers = GaugeMetricFamily(prefix + "speakers", "Speakers with a track in the running recordings")
        speakers.add_metric([], sum(s.engine.users for s in live))
        yield speakers
        lag = GaugeMetricFamily(prefix + "worker_lag_seconds",
                                "How far the recording workers are behind the oldest packet they hold (the most of "
                                "any recording)")
        lag.add_metric([], max((s.engine.worker_lag for s in live), default=0.0))
        yield lag
        depth = GaugeMetricFamily(prefix + "queue_depth", "Packets accepted and waiting for a recording worker")
        depth.add_metric([], sum(s.engine.queue_depth for s in live))
        yield depth
        for name, (doc, labels) in _COUNTERS.items():
            family = CounterMetricFamily(prefix + name, doc, labels=labels)
            values = {key: n for key, n in totals.items() if key[0] == name}
            if not labels:
                family.add_metric([], values.get((name, ()), 0))
            for (_name, pairs), n in sorted(values.items()):
                if pairs:
                    family.add_metric([value for _label, value in pairs], n)
            yield family
