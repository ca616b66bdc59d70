"""The real bot on a PostgreSQL index, and PostgreSQL going away mid-recording.

The server is real (tests/postgres.py) and of this test alone, since the test
stops it: ``pg_ctl stop -m fast`` cuts the bot's connection as a crash or a
failover of the database host would. The recording must go on to disk, a
``/record stop`` while the server is down must be finished by itself once it is
back, with every speaker named and counted, including one first heard during
the outage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from bot.tree import INDEX_UNAVAILABLE
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.polling import wait_until
from tests.postgres import PostgresServer, running_server

from .checks import (
    check_get_serves,
    check_tracks,
    manifest,
    origin_guess,
    read_wav,
    recording_id,
    refusal,
    wait_posted,
)
from .conftest import REPLY_TIMEOUT, BotProcess

#: alice talks at once; bob joins and talks only later, when the test has stopped the database.
ALICE_THEN_BOB = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 1.0),)),
        SpeakerSpec("bob", 330.0, talks=(Talk(6.5, 7.5),), join=6.0),
    ),
    duration=8.0,
)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server this test may stop and start."""
    with running_server() as server:
        yield server


def _rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql, args).fetchall()


def test_a_recording_outlives_postgres_going_away_and_is_finished_once_it_is_back(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], own_postgres: PostgresServer) -> None:
    url = own_postgres.url(own_postgres.create_database())
    bot = start_bot(DATABASE_URL=url)
    assert not (bot.recordings_dir / "index.sqlite3").exists()
    voice, text = fake.config["voice_channel_id"], fake.config["text_channel_id"]

    rid = recording_id(bot.ask("record", "start", {"channel": voice}))
    assert _rows(url, "SELECT status FROM recordings WHERE id = %s", rid) == [("recording",)]
    runner = fake.start_scenario(ALICE_THEN_BOB)
    alice, bob = runner.speakers["alice"].user_id, runner.speakers["bob"].user_id
    wait_until(lambda: _rows(url, "SELECT 1 FROM speakers WHERE recording_id = %s AND user_id = %s", rid, alice),
               "alice noted in the index", REPLY_TIMEOUT)

    assert not _rows(url, "SELECT 1 FROM speakers WHERE recording_id = %s AND user_id = %s", rid, bob)
    own_postgres.stop("fast")
    fake.run(runner.wait_done(), timeout=ALICE_THEN_BOB.duration + 30)
    fake.run(runner.stop())
    folder = bot.recordings_dir / rid
    wait_until(lambda: (folder / f"{bob}.wav").exists(), "bob's track on disk", REPLY_TIMEOUT)
    wait_until(lambda: f"recording {rid} goes on without the index for now" in bot.log(),
               "the bot to meet the outage", REPLY_TIMEOUT)
    status = bot.ask("record", "status")
    assert rid in status.content and "could not" not in status.content, status.content  # still recording
    # A command that needs the index says why it cannot, in one line.
    assert refusal(bot.ask("record", "note", {"text": "while the database is away"})) == INDEX_UNAVAILABLE

    answer = bot.ask("record", "stop")
    assert answer.content.startswith("Recording stopped."), answer.content
    assert f"Recording `{rid}` could not be finished" in answer.content and "tries again" in answer.content
    assert "Traceback" not in answer.content and own_postgres.password not in answer.content

    own_postgres.start()
    done = wait_posted(fake, [text], f"Recording `{rid}` is finished now.", REPLY_TIMEOUT)
    assert "2 speaker(s)" in done.content, done.content
    ((status_now, ended_at),) = _rows(url, "SELECT status, ended_at FROM recordings WHERE id = %s", rid)
    assert status_now == "finished" and ended_at is not None
    assert {uid for (uid,) in _rows(url, "SELECT user_id FROM speakers WHERE recording_id = %s", rid)} == {alice, bob}

    meta = manifest(folder)
    assert meta["status"] == "finished"
    speakers = {int(s["user_id"]): s for s in meta["speakers"]}
    assert set(speakers) == {alice, bob}, meta["speakers"]
    assert speakers[alice]["file"] == f"alice-{alice}.wav" and speakers[bob]["file"] == f"bob-{bob}.wav"
    assert speakers[alice]["talk_seconds"] > 0.5 and speakers[bob]["talk_seconds"] > 0.5, meta["speakers"]
    tracks = {name: read_wav(folder / speakers[uid]["file"]) for name, uid in (("alice", alice), ("bob", bob))}
    check_tracks(tracks, runner, origin_guess(runner, meta["started_at"]))
    check_get_serves(bot, rid, folder, [s["file"] for s in speakers.values()])

    # A start while the database is away is refused in one line that names no host.
    own_postgres.stop("fast")
    refused = bot.ask("record", "start", {"channel": voice})
    assert refused.content == (f"Could not start recording <#{voice}>: the bot's database cannot be reached "
                               f"right now; try again in a minute"), refused.content
    own_postgres.start()
