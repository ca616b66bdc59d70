"""A recording that stops but cannot be finished: another process holds the SQLite index.

The failure is real, not mocked: the test opens the bot's index database and
holds ``BEGIN EXCLUSIVE``, so the bot's last write of a recording (its status
in :meth:`bot.storage.RecordingStore.finish`) gives up with "database is locked"
after the store's 10 s busy timeout. Reads still work (the index is in WAL mode).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import (check_get_serves, check_tracks, manifest, origin_guess, play, read_wav, recording_id,
                     refusal, wait_posted)
from .conftest import REPLY_TIMEOUT, BotProcess

#: alice talks; when the scenario ends she leaves, and the channel is empty.
TALK_AND_LEAVE = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.5, 1.2),)),
    ),
    duration=1.4,
)
NOTHING_TO_STOP = "Nothing is being recorded in this server."


@contextlib.contextmanager
def _index_locked(index: Path) -> Iterator[None]:
    """Hold the index's write lock, as another process writing to it would."""
    db = sqlite3.connect(index, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        db.close()  # rolls back and lets go of the lock


def _query(index: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(index)) as db:
        return db.execute(sql, args).fetchall()


def _status(index: Path, rid: str) -> str:
    """The recording's status in the index."""
    return str(_query(index, "SELECT status FROM recordings WHERE id = ?", rid)[0][0])


def _check_unfinished(text: str, rid: str, bot: BotProcess) -> None:
    """A clear notice for people: not finished, files kept, repaired at the next start; no internals."""
    assert f"Recording `{rid}` could not be finished" in text, text
    assert "files are kept" in text and "next start of the bot repairs it" in text, text
    for internal in ("Traceback", "OperationalError", "database is locked", str(bot.recordings_dir)):
        assert internal not in text, text


def test_a_recording_that_cannot_be_finished_is_announced_dropped_and_repaired_at_the_next_start(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(EMPTY_CHANNEL_MINUTES="0.05")
    index = bot.recordings_dir / "index.sqlite3"
    voice, text = fake.config["voice_channel_id"], fake.config["text_channel_id"]
    alice = fake.config["members"]["alice"]

    # Stopping by itself (the channel stays empty) while the index is locked.
    rid = recording_id(bot.ask("record", "start", {"channel": voice}))
    runner = play(fake, TALK_AND_LEAVE)
    # The bot notes a speaker in the index as soon as it hears them; lock only after
    # that, so the write that meets the lock is the one that finishes the recording.
    fake.wait_for(lambda: _query(index, "SELECT 1 FROM speakers WHERE recording_id = ? AND user_id = ?",
                                 rid, alice), timeout=REPLY_TIMEOUT, what="alice noted in the index")
    with _index_locked(index):
        notice = wait_posted(fake, [text], "Recording stopped:", REPLY_TIMEOUT)
        # The session is gone although the index is still locked.
        assert refusal(bot.ask("record", "stop")) == NOTHING_TO_STOP
    assert notice.content.startswith("Recording stopped: nobody was left in the channel for 3 s."), notice.content
    _check_unfinished(notice.content, rid, bot)
    assert not notice.attachments
    assert _status(index, rid) == "recording"

    # The guild may record again; /record stop meets the same failure.
    rid2 = recording_id(bot.ask("record", "start", {"channel": voice}))
    assert rid2 != rid
    with _index_locked(index):
        answer = bot.ask("record", "stop")
    assert answer.content.startswith("Recording stopped."), answer.content
    _check_unfinished(answer.content, rid2, bot)
    assert refusal(bot.ask("record", "status")) == NOTHING_TO_STOP
    # The operator gets the cause, with its traceback, in the log: once per recording.
    log = bot.log()
    for stuck in (rid, rid2):
        assert f"recording {stuck} stopped" in log and "but could not be finished" in log
    assert log.count("sqlite3.OperationalError: database is locked") == 2, log[-5000:]
    # Both are listed; /recordings get says what happened, not "still running".
    listing = refusal(bot.ask("recordings", "list"))
    assert f"`{rid}`" in listing and f"`{rid2}`" in listing, listing
    got = refusal(bot.ask("recordings", "get", {"recording_id": rid}))
    assert "next start of the bot repairs it" in got and "still running" not in got, got
    assert bot.terminate() == 0

    # The next start repairs both, announces them, and hands the first one out.
    again = start_bot()
    for repaired in (rid, rid2):
        wait_posted(fake, [voice, text], f"`{repaired}` was repaired", REPLY_TIMEOUT)
        assert _status(index, repaired) == "interrupted"
        assert manifest(again.recordings_dir / repaired)["status"] == "interrupted"
    folder = again.recordings_dir / rid
    meta = manifest(folder)
    files = {int(s["user_id"]): s["file"] for s in meta["speakers"]}
    assert set(files) == {alice}, meta["speakers"]
    check_tracks({"alice": read_wav(folder / files[alice])}, runner, origin_guess(runner, meta["started_at"]))
    check_get_serves(again, rid, folder, files.values())
    assert manifest(again.recordings_dir / rid2)["speakers"] == []
