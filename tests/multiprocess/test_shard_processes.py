"""The multi-machine install end to end: two bot processes on disjoint shards of a 4-shard bot
and one download front, sharing a real PostgreSQL index and an S3 object store (moto on
loopback), against the loopback Discord; the same settings as deploy/compose.yaml.

1. Both processes record a guild of their own shards at the same time; every track
   is what its speakers sent, sample-exact, and the front, which shares nothing with
   the bots but the database and the store, hands out each track and the ZIP byte
   for byte as recorded. In the first process's guild a member opts out and the
   owner changes a server setting.
2. Both processes are stopped and started again on 2 shards, which moves that guild
   to the second one: there its recordings are listed and handed out (from the
   store), its setting holds, and the member who opted out talks and is not recorded.
3. The second process is killed (SIGKILL) in the middle of that recording and started
   again on its own folder: the recording is repaired, uploaded and served by the front.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import psycopg

from bot.objects import StorageSettings
from tests.bot_process.checks import (
    check_tracks,
    download_link,
    http_get,
    manifest,
    origin_guess,
    read_wav,
    recording_id,
    wait_posted,
)
from tests.bot_process.conftest import REPLY_TIMEOUT, free_port
from tests.bot_process.ops import metric, wait_metric
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.polling import wait_until
from tests.s3server import REGION, S3Server

from .cluster import Cluster
from .guilds import ask, guild_on_shard, invoke, member, play, shard_of
from .layout import SHARDS

#: Two speakers taking turns, briefly.
TWO = Scenario(
    speakers=(
        SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 1.3),)),
        SpeakerSpec("bob", 330.0, talks=(Talk(1.0, 2.2),)),
    ),
    duration=2.4,
)
#: alice and dave (who opted out) talk without pause until the test ends it.
WITH_OPTED_OUT = Scenario(
    speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.2, 120.0),)),
              SpeakerSpec("dave", 150.0, talks=(Talk(0.2, 120.0),))),
    duration=120.0,
)
#: A finished recording's upload to loopback takes far less.
UPLOAD_TIMEOUT = 90.0


def _stored(database_url: str, rid: str) -> bool:
    """Whether the recording's upload is verified (the index says where it is in the store)."""
    with psycopg.connect(database_url) as db:
        row = db.execute("SELECT stored_at FROM uploads WHERE recording_id = %s", (rid,)).fetchone()
    return row is not None and row[0] is not None


def _check_front_serves(link: str, folder: Path, files: list[str]) -> None:
    """The front answers the recording's page, and each of `files` and the ZIP's tracks are the
    local copy's bytes (KEEP_LOCAL_COPY=yes keeps it beside the store's)."""
    status, page = http_get(link)
    assert status == 200, page[:300]
    base, key = link.split("?key=")
    for name in files:
        assert f"files/{name}?key={key}".encode() in page
        status, body = http_get(f"{base}/files/{name}?key={key}")
        assert status == 200 and body == (folder / name).read_bytes(), f"{name} from the front is not as recorded"
    status, zipped = http_get(f"{base}/all.zip?key={key}")
    assert status == 200, zipped[:300]
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        tracks = {n: archive.read(n) for n in archive.namelist() if n.endswith(".wav")}
    assert tracks == {name: (folder / name).read_bytes() for name in files}


def test_two_shard_processes_and_a_front_share_index_and_store_through_reshard_and_crash(
        fake: FakeDiscord, cluster: Cluster, postgres_url: str, s3_server: S3Server,
        s3_settings: StorageSettings, tmp_path: Path) -> None:
    before, after = int(SHARDS["before"][0]), int(SHARDS["after"][0])
    moves = guild_on_shard(fake, "Moving guild", 1, before, "dave")  # on a, then on b
    stays = guild_on_shard(fake, "Staying guild", 3, before)  # on b throughout
    assert shard_of(moves.guild_id, after) == shard_of(stays.guild_id, after) == 1
    front_port = free_port()
    shared = {"DATABASE_URL": postgres_url, "STORAGE_URL": s3_settings.url, "STORAGE_ENDPOINT": s3_server.endpoint,
              "STORAGE_REGION": REGION, **s3_server.env(), "SYNC_COMMANDS": "no", "KEEP_LOCAL_COPY": "yes",
              "PUBLIC_URL": f"http://127.0.0.1:{front_port}"}
    folders = {name: tmp_path / name for name in ("a", "b")}

    def bot_config(name: str, when: str) -> dict[str, str]:
        count, ids = SHARDS[when]
        return {**shared, "RECORDINGS_DIR": str(folders[name]), "SHARD_COUNT": count, "SHARD_IDS": ids[name]}

    assert cluster.sync_commands(shared).startswith("synced 3 global slash commands")
    a = cluster.launch_bot("a-4-shards", bot_config("a", "before"))
    b = cluster.launch_bot("b-4-shards", bot_config("b", "before"))
    front = cluster.launch_front("front", front_port, {k: v for k, v in shared.items() if k != "PUBLIC_URL"})
    cluster.wait_started(a, b, front)

    # 1. Each process records its own guild, at the same time; the moving guild's member
    # opts out and its owner changes a setting there.
    dave = member(fake, moves, "dave")
    assert "You are opted out" in ask(fake, moves, "record", "optout", user_id=dave).content
    changed = ask(fake, moves, "settings", "attach-files", {"value": False}).content
    assert "Stop summary attaches the files: no" in changed, changed
    starts = {place: invoke(fake, place, "record", "start", {"channel": place.voice_id}) for place in (moves, stays)}
    rids = {place: recording_id(record.wait_message(timeout=REPLY_TIMEOUT)) for place, record in starts.items()}
    recorded_by = {moves: folders["a"], stays: folders["b"]}
    assert all((folder / rids[place]).is_dir() for place, folder in recorded_by.items())
    runners = {place: play(fake, place, TWO) for place in rids}
    for runner in runners.values():
        fake.run(runner.wait_done(), timeout=TWO.duration + 30)
        fake.run(runner.stop())
    stopped = {place: ask(fake, place, "record", "stop") for place in rids}
    assert not stopped[moves].attachments and stopped[stays].attachments  # the setting of each server
    for place, folder in recorded_by.items():
        rid, link = rids[place], download_link(stopped[place])
        assert link.startswith(front.base), link
        wait_until(lambda: _stored(postgres_url, rid), f"recording {rid} uploaded", UPLOAD_TIMEOUT)
        meta = manifest(folder / rid)
        files = {s["display_name"]: s["file"] for s in meta["speakers"]}
        assert set(files) == {"alice", "bob"}, meta["speakers"]
        runner = runners[place]
        check_tracks({n: read_wav(folder / rid / f) for n, f in files.items()}, runner,
                     origin_guess(runner, meta["started_at"]))
        _check_front_serves(link, folder / rid, list(files.values()))

    # 2. Reshard: stop both, start both on 2 shards; the moving guild is now on b, with its
    # recordings, its setting and its opt-out.
    cluster.stop(a, b)
    a = cluster.launch_bot("a-2-shards", bot_config("a", "after"))
    b = cluster.launch_bot("b-2-shards", bot_config("b", "after"))
    cluster.wait_started(a, b)
    listed = ask(fake, moves, "recordings", "list").content
    assert f"`{rids[moves]}`" in listed and f"`{rids[stays]}`" not in listed, listed
    got = ask(fake, moves, "recordings", "get", {"recording_id": rids[moves]}).content
    assert "kept in the object storage" in got and download_link(stopped[moves]) in got, got
    assert "Stop summary attaches the files: no" in ask(fake, moves, "settings", "show").content
    rid = recording_id(ask(fake, moves, "record", "start", {"channel": moves.voice_id}))
    folder = folders["b"] / rid
    assert folder.is_dir(), "the moved guild was not recorded by the process that has its shard now"
    runner = play(fake, moves, WITH_OPTED_OUT)
    alice = runner.speakers["alice"].user_id
    wait_until(lambda: (folder / f"{alice}.wav").exists() and (folder / f"{alice}.wav").stat().st_size > 100_000,
               "a second of alice on disk", REPLY_TIMEOUT)
    # dave's voice reaches the bot and is thrown away unwritten.
    wait_metric(b.http_base, lambda s: metric(s, "voice_recorder_packets_dropped_total", layer="receive",
                                              reason="excluded") > 0, REPLY_TIMEOUT, "dave's packets excluded")
    assert sorted(p.name for p in folder.glob("*.wav")) == [f"{alice}.wav"]

    # 3. b dies mid-recording and starts again on its own folder.
    b.kill()
    fake.run(runner.stop())
    # Discord drops a dead client's voice state; the loopback Discord leaves that to the test.
    fake.kick_from_voice(fake.config["bot_user_id"])
    b = cluster.launch_bot("b-restarted", bot_config("b", "after"))
    cluster.wait_started(b)
    repaired = wait_posted(fake, moves.channels, f"`{rid}` was repaired", REPLY_TIMEOUT)
    link = download_link(repaired)
    assert link.startswith(front.base), link
    wait_until(lambda: _stored(postgres_url, rid), f"the repaired recording {rid} uploaded", UPLOAD_TIMEOUT)
    meta = manifest(folder)
    assert meta["status"] == "interrupted"
    assert [int(s["user_id"]) for s in meta["speakers"]] == [alice], meta["speakers"]  # dave: no track
    track = meta["speakers"][0]["file"]
    assert len(read_wav(folder / track)) >= 48_000
    _check_front_serves(link, folder, [track])
