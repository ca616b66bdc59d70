"""Fixtures of the multi-process tests: the loopback Discord and the failed test's process logs
(tests/bot_process/conftest.py), PostgreSQL (tests/conftest.py), moto's S3 server
(tests/s3server.py), and :class:`~tests.multiprocess.cluster.Cluster` to run processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot_process.conftest import fake, pytest_runtest_makereport
from tests.fakediscord.server import FakeDiscord
from tests.s3server import s3_server, s3_settings

from .cluster import Cluster

__all__ = ["cluster", "fake", "pytest_runtest_makereport", "s3_server", "s3_settings"]


@pytest.fixture
def cluster(fake: FakeDiscord, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Processes against `fake`; every one still running at teardown gets SIGTERM and must exit 0."""
    request.node.bot_logs = []  # read by pytest_runtest_makereport, attached to a failure's report
    running = Cluster(fake, tmp_path, request.node.bot_logs)
    yield running
    running.close()
