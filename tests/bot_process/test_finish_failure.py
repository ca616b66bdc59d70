"""A recording that stops but cannot be finished: another process holds the SQLite index.

The failure is real, not mocked: the test opens the bot's index database and
holds ``BEGIN EXCLUSIVE``, so the bot's last write of a recording (its status
in :meth:`bot.storage.RecordingStore.finish`) gives up with "database is locked"
after the store's busy timeout (``INDEX_BUSY_SECONDS``: :data:`BUSY_SECONDS` here,
not the default 10 s, so each write that meets the lock fails sooner). Reads still
work (the index is in WAL mode).
While the bot runs it retries and finishes the recording once the lock goes; a
shutdown ends the retries, and the next start finishes what is left.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import (
    check_get_serves,
    check_tracks,
    index_locked,
    manifest,
    origin_guess,
    play,
    read_wav,
    recording_id,
    refusal,
    wait_posted,
)
from .conftest import REPLY_TIMEOUT, BotProcess

#: alice talks; when the scenario ends she leaves, and the channel is empty.
TALK_AND_LEAVE = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.5, 1.2),)),
    ),
    duration=1.4,
)
NOTHING_TO_STOP = "Nothing is being recorded in this server."
#: How long the bot's writes wait for the locked index before they fail.
BUSY_SECONDS = "2"


def _query(index: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(index)) as db:
        return db.execute(sql, args).fetchall()


def _status(index: Path, rid: str) -> str:
    """The recording's status in the index."""
    return str(_query(index, "SELECT status FROM recordings WHERE id = ?", rid)[0][0])


def _check_unfinished(text: str, rid: str, bot: BotProcess, *, retrying: bool = True) -> None:
    """A clear notice for people: not finished, files kept, what happens next; no internals."""
    assert f"Recording `{rid}` could not be finished" in text, text
    assert "files are kept" in text, text
    if retrying:
        assert "tries again" in text and "next start repairs it" in text, text
    else:
        assert "tries again" not in text and "next start of the bot repairs it" in text, text
    for internal in ("Traceback", "OperationalError", "database is locked", str(bot.recordings_dir)):
        assert internal not in text, text


def test_a_recording_that_cannot_be_finished_is_finished_once_the_index_lets_go(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(EMPTY_CHANNEL_MINUTES="0.05", INDEX_BUSY_SECONDS=BUSY_SECONDS)
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
    with index_locked(index):
        notice = wait_posted(fake, [text], "Recording stopped:", REPLY_TIMEOUT)
        # The session is gone although the index is still locked.
        assert refusal(bot.ask("record", "stop")) == NOTHING_TO_STOP
        assert _status(index, rid) == "recording"
    assert notice.content.startswith("Recording stopped: nobody was left in the channel for 3 s."), notice.content
    _check_unfinished(notice.content, rid, bot)
    assert not notice.attachments

    # Once the lock is gone, a retry finishes it with the summary it would have had, unrestarted.
    done = wait_posted(fake, [text], f"Recording `{rid}` is finished now.", REPLY_TIMEOUT)
    assert "1 speaker(s)" in done.content and "talked" in done.content and "Download" in done.content, done.content
    assert _status(index, rid) == "finished"
    folder = bot.recordings_dir / rid
    meta = manifest(folder)
    assert meta["status"] == "finished"
    files = {int(s["user_id"]): s["file"] for s in meta["speakers"]}
    assert set(files) == {alice}, meta["speakers"]
    assert next(s for s in meta["speakers"] if int(s["user_id"]) == alice)["talk_seconds"] > 0.5
    check_tracks({"alice": read_wav(folder / files[alice])}, runner, origin_guess(runner, meta["started_at"]))
    check_get_serves(bot, rid, folder, files.values())

    # /record stop meets the same failure, and the same retry finishes it.
    rid2 = recording_id(bot.ask("record", "start", {"channel": voice}))
    assert rid2 != rid
    with index_locked(index):
        answer = bot.ask("record", "stop")
        assert answer.content.startswith("Recording stopped."), answer.content
        _check_unfinished(answer.content, rid2, bot)
        assert refusal(bot.ask("record", "status")) == NOTHING_TO_STOP
    done = wait_posted(fake, [text], f"Recording `{rid2}` is finished now.", REPLY_TIMEOUT)
    assert "Nobody spoke." in done.content, done.content
    assert _status(index, rid2) == "finished"
    # The operator gets each cause, with its traceback, in the log: once per recording.
    log = bot.log()
    for stuck in (rid, rid2):
        assert f"recording {stuck} stopped" in log and f"recording {stuck} finished after its stop had failed" in log
    assert log.count("sqlite3.OperationalError: database is locked") == 2, log[-5000:]


def test_a_recording_the_shutdown_cannot_finish_is_announced_and_finished_at_the_next_start(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(INDEX_BUSY_SECONDS=BUSY_SECONDS)
    index = bot.recordings_dir / "index.sqlite3"
    voice, text = fake.config["voice_channel_id"], fake.config["text_channel_id"]
    rid = recording_id(bot.ask("record", "start", {"channel": voice}))
    with index_locked(index):
        assert bot.terminate() == 0
    notice = wait_posted(fake, [text], "Recording stopped: the bot is shutting down.", REPLY_TIMEOUT)
    _check_unfinished(notice.content, rid, bot, retrying=False)
    assert _status(index, rid) == "recording"
    log = bot.log()
    assert "finalizing the recording of guild" in log
    assert log.count("sqlite3.OperationalError: database is locked") == 1, log[-5000:]

    # Only its index entry was left behind: the next start finishes it (not "a crash") and hands it out.
    again = start_bot()
    wait_posted(fake, [voice, text], f"`{rid}` of **", REPLY_TIMEOUT)
    told = [m.content for c in (voice, text) for m in fake.messages(c) if f"`{rid}`" in m.content]
    assert any("is finished now" in m for m in told) and not any("unexpectedly" in m for m in told), told
    assert _status(index, rid) == "finished"
    meta = manifest(again.recordings_dir / rid)
    assert meta["status"] == "finished" and meta["speakers"] == []
    got = again.ask("recordings", "get", {"recording_id": rid})
    assert f"Recording `{rid}`" in got.content and "could not be finished" not in got.content, got.content
