"""A reshard while recordings run: the guild of a recording moves to a shard another process
runs, and the process that has the recording's files closes it at its restart and still
tells the guild, through Discord's REST API, though it no longer receives that guild.

Two guilds on the two shards of a 2-shard bot, one process running both:

1. both record; the process is killed (SIGKILL) and started again on shard 0 only:
   each recording is repaired, and each guild told so with its link, also the one
   now on shard 1;
2. the guild on shard 0 records; the process is stopped (SIGTERM: the recording
   is paused for a restart) and started again on shard 1 only: it cannot continue
   the recording in a guild it no longer runs, so it finishes it and posts its stop
   summary with the link and the ZIP, saying why;
3. the guild now on shard 1 records; a shutdown cannot finish it (the index is
   locked) and the process starts again on shard 0 only: the start finishes it
   and tells that guild, which this process no longer runs.
"""

from __future__ import annotations

from pathlib import Path

from tests.bot_process.checks import (
    download_link,
    index_locked,
    manifest,
    recording_id,
    wait_posted,
    zip_members,
)
from tests.bot_process.conftest import REPLY_TIMEOUT
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.polling import wait_until

from .cluster import Cluster
from .guilds import ask, guild_on_shard, invoke, play

#: alice talks without pause until the test ends it.
NONSTOP = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.2, 120.0),)),), duration=120.0)


def test_recordings_whose_guild_moved_to_another_process_are_closed_and_announced_by_the_one_with_their_files(
        fake: FakeDiscord, cluster: Cluster, tmp_path: Path) -> None:
    stays, moves = guild_on_shard(fake, "Stays", 0, 2), guild_on_shard(fake, "Moves", 1, 2)
    env = {"SHARD_COUNT": "2", "RECORDINGS_DIR": str(tmp_path / "recordings"),  # one folder: one machine
           "INDEX_BUSY_SECONDS": "2"}  # the shutdown of step 3 gives up on the locked index after 2 s, not 10
    bot = cluster.launch_bot("both-shards", env)
    cluster.wait_started(bot)

    # 1. A crash, then a restart on shard 0 alone.
    starts = {place: invoke(fake, place, "record", "start", {"channel": place.voice_id}) for place in (stays, moves)}
    rids = {place: recording_id(record.wait_message(timeout=REPLY_TIMEOUT)) for place, record in starts.items()}
    runners = {place: play(fake, place, NONSTOP) for place in rids}
    for place, runner in runners.items():
        track = bot.recordings_dir / rids[place] / f"{runner.speakers['alice'].user_id}.wav"
        wait_until(lambda: track.exists() and track.stat().st_size > 48_000,
                   "half a second of alice on disk", REPLY_TIMEOUT)
    bot.kill()
    for runner in runners.values():
        fake.run(runner.stop())
    fake.kick_from_voice(fake.config["bot_user_id"])  # Discord drops a dead client's voice states
    bot = cluster.launch_bot("shard-0", {**env, "SHARD_IDS": "0"})
    cluster.wait_started(bot)
    for place, rid in rids.items():
        notice = wait_posted(fake, place.channels, f"`{rid}` was repaired", REPLY_TIMEOUT)
        assert download_link(notice).startswith(bot.http_base)
        assert manifest(bot.recordings_dir / rid)["status"] == "interrupted"

    # 2. A pause for a restart, then a restart on shard 1 alone.
    rid = recording_id(ask(fake, stays, "record", "start", {"channel": stays.voice_id}))
    runner = play(fake, stays, NONSTOP)
    track = bot.recordings_dir / rid / f"{runner.speakers['alice'].user_id}.wav"
    wait_until(lambda: track.exists() and track.stat().st_size > 48_000,
               "half a second of alice on disk", REPLY_TIMEOUT)
    cluster.stop(bot)
    wait_posted(fake, stays.channels, f"Recording `{rid}` is paused: the bot is restarting.", REPLY_TIMEOUT)
    bot = cluster.launch_bot("shard-1", {**env, "SHARD_IDS": "1"})
    cluster.wait_started(bot)
    summary = wait_posted(fake, stays.channels, "Recording stopped: ", REPLY_TIMEOUT)
    fake.run(runner.stop())
    assert "moved to another of its processes" in summary.content, summary.content
    assert f"`{rid}`" in summary.content and download_link(summary).startswith(bot.http_base), summary.content
    folder = bot.recordings_dir / rid
    assert manifest(folder)["status"] == "finished"
    names = [s["file"] for s in manifest(folder)["speakers"]]
    assert zip_members(summary) == {n: (folder / n).read_bytes() for n in names}

    # 3. A shutdown that could not finish a recording (the index was locked), then a restart
    # on shard 0 alone: the start finishes it and tells its guild, now on the other shard.
    rid = recording_id(ask(fake, moves, "record", "start", {"channel": moves.voice_id}))
    with index_locked(tmp_path / "recordings" / "index.sqlite3"):
        cluster.stop(bot)
    wait_posted(fake, moves.channels, f"Recording `{rid}` could not be finished", REPLY_TIMEOUT)
    bot = cluster.launch_bot("shard-0-again", {**env, "SHARD_IDS": "0"})
    cluster.wait_started(bot)
    done = wait_posted(fake, moves.channels, f"Recording `{rid}` of **", REPLY_TIMEOUT)
    assert "is finished now" in done.content and download_link(done).startswith(bot.http_base), done.content
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"
