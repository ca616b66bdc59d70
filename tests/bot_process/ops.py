"""Reading what the bot tells operators: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


def healthz(base: str) -> tuple[int, dict[str, object]]:
    """GET ``base/healthz``: (status, JSON body), 503 included."""
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_health(base: str, status: int, timeout: float, body: dict[str, object] | None = None) -> dict[str, object]:
    """Poll ``/healthz`` until it answers `status` (with `body`, when given); its body."""
    deadline = time.monotonic() + timeout
    while True:
        got, answer = healthz(base)
        if got == status and body in (None, answer):
            return answer
        assert time.monotonic() < deadline, f"/healthz still answers {got} {answer} after {timeout:g} s"
        time.sleep(0.1)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> Samples:
    """GET ``base/metrics`` and parse it as Prometheus does: sample name and sorted labels -> value."""
    with urllib.request.urlopen(base + "/metrics", timeout=15) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The value of one sample (it must exist)."""
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"/metrics has no {name}{labels or ''}"
    return samples[key]


def wait_metric(base: str, check: Callable[[Samples], bool], timeout: float, what: str) -> Samples:
    """Scrape until `check` holds; the samples that satisfied it."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"/metrics never showed {what} within {timeout:g} s"
        time.sleep(0.1)
