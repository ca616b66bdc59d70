"""The receive snapshot: drop counts by the receiver's keys, and the dict the stop log line shows."""

from __future__ import annotations

import pytest

from bot.voice.stats import ReceiveStats


def test_counts_land_in_their_fields_and_dave_failures_by_name() -> None:
    stats = ReceiveStats.from_counts(9, 4, 1, {"rtcp": 2, "sink_full": 1, "dave:NoDecryptorForUser": 1})
    assert stats == ReceiveStats(
        datagrams=9, accepted=4, held=1, rtcp=2, sink_full=1, dave_failures={"dave:NoDecryptorForUser": 1},
    )
    assert stats.dropped == 4
    assert stats.accepted + stats.held + stats.dropped == stats.datagrams


def test_the_log_form_keeps_the_receivers_keys() -> None:
    counts = {"rtcp": 2, "dave:NoDecryptorForUser": 1}
    assert ReceiveStats.from_counts(5, 2, 0, counts).as_dict() == {"datagrams": 5, "accepted": 2, "held": 0, **counts}
    assert ReceiveStats().as_dict() == {"datagrams": 0, "accepted": 0, "held": 0}


def test_a_reason_without_a_field_is_refused() -> None:
    with pytest.raises(TypeError, match="mystery"):
        ReceiveStats.from_counts(1, 0, 0, {"mystery": 1})
