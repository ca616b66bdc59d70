"""The disk fills up during a recording; and the free-space floor MIN_FREE_DISK_MB.

The recordings directory is a small tmpfs (the tests run as root, as CI
does), so a write fails as on a real full disk: ENOSPC. Two guilds record on
it at once. Guild B's speaker talks first and then falls quiet; then guild
A's two speakers talk without pause until the disk is full. A's recording
must stop by itself saying why (no machine path), keep every WAV valid and
sample-exact up to the failure, and be finished and retrievable. B's
recording, which wrote nothing while the disk was full, must go on: after
the operator grows the disk, B's speaker talks again and B's files hold both
turns when it is stopped; and a new recording can start.

Shared disk, shared fate: a recording that writes while the disk is full
fails too, which is right. What must not happen is one recording's failure
stopping another, the bot, or its commands.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import soundfile

from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE
from sinks.wavfile import HEADER_SIZE
from sinks.worker import SYNC_INTERVAL
from tests.disks import tmpfs
from tests.fakediscord.messages import Message
from tests.fakediscord.scenario import Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import CHANNEL_TEXT, CHANNEL_VOICE

from .checks import (
    check_get_serves,
    check_tracks,
    download_link,
    http_get,
    manifest,
    origin_guess,
    play,
    read_wav,
    recording_id,
    refusal,
    seconds,
    talk_samples,
    wait_posted,
    zip_members,
)
from .conftest import REPLY_TIMEOUT, BotProcess

#: The recordings file system: about 10 s of two mono 48 kHz tracks after B's turn.
DISK_SIZE = "2m"
#: What the operator grows it to once it was full.
GROWN_SIZE = "64m"

#: Guild A: two speakers who, once both are in (and the DAVE group has settled: a
#: transition re-anchors a running stream), never pause; stopped by the test after the failure.
NONSTOP = Scenario(
    speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(1.5, 120.0),)),
              SpeakerSpec("bob", 110.0, talks=(Talk(1.5, 120.0),))),
    duration=120.0,
)
#: Guild B: one short turn of dave (played twice: before the disk fills, and after it grew).
TURN = Scenario(speakers=(SpeakerSpec("dave", 160.0, talks=(Talk(0.3, 1.5),)),), duration=1.8)


@dataclass
class SmallDisk:
    """A tmpfs mounted on the bot's recordings directory."""

    path: Path

    def resize(self, size: str) -> None:
        """Grow (or shrink) the file system in place, as an operator would free space."""
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """RECORDINGS_DIR on a DISK_SIZE tmpfs; request it before ``start_bot`` so the bot
    has exited before it is unmounted."""
    with tmpfs(tmp_path / "recordings", DISK_SIZE) as path:
        yield SmallDisk(path)


@dataclass
class GuildB:
    """The second guild, with its own text and voice channels."""

    guild_id: int
    text_id: int
    voice_id: int


def _add_guild(fake: FakeDiscord) -> GuildB:
    def build() -> GuildB:
        world = fake.world
        guild = world.add_guild("Guild B", world.users[fake.config["members"]["owner"]])
        text = world.add_channel(guild, "b-general", CHANNEL_TEXT)
        voice = world.add_channel(guild, "B Voice", CHANNEL_VOICE)
        world.add_member(guild, world.users[fake.config["bot_user_id"]])
        return GuildB(guild.id, text.id, voice.id)
    return fake.run(build)


def _play_in(fake: FakeDiscord, b: GuildB, scenario: Scenario) -> ScenarioRunner:
    async def play() -> ScenarioRunner:
        runner = ScenarioRunner(fake.world, fake.voice, b.guild_id, b.voice_id, scenario)
        await runner.start()
        await runner.wait_done()
        await runner.stop()
        return runner
    return fake.run(play(), timeout=scenario.duration + 30)


def _synced_frames(track: Path) -> int | None:
    """Frames the WAV header states when it states the whole file (the engine synced), else None."""
    with open(track, "rb") as f:
        head = f.read(HEADER_SIZE)
        size = os.fstat(f.fileno()).st_size
    if len(head) < HEADER_SIZE:
        return None
    stated = struct.unpack_from("<I", head, HEADER_SIZE - 4)[0]
    return stated // 2 if stated == size - HEADER_SIZE else None


def _failure_time(bot: BotProcess) -> float:
    """When the engine hit the full disk, on ``time.monotonic``, from its log line."""
    line = next(line for line in bot.log().splitlines() if "ERROR" in line and "No space left" in line)
    wall = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return wall - (time.time() - time.monotonic())


def _files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def test_a_full_disk_stops_only_the_recording_that_hit_it(
        fake: FakeDiscord, small_disk: SmallDisk, start_bot: Callable[..., BotProcess], tmp_path: Path) -> None:
    b = _add_guild(fake)
    bot = start_bot(MIN_FREE_DISK_MB="0")
    owner = fake.config["members"]["owner"]
    text_a = fake.config["text_channel_id"]

    def in_b(group: str, sub: str, options: dict[str, Any] | None = None) -> Message:
        return fake.invoke_command(group, sub, options, user_id=owner, guild_id=b.guild_id,
                                   channel_id=b.text_id).wait_message(timeout=REPLY_TIMEOUT)

    # B records dave's first turn; wait until it is on disk and he is quiet.
    b_rid = recording_id(in_b("record", "start", {"channel": b.voice_id}))
    first_turn = _play_in(fake, b, TURN)
    dave = first_turn.speakers["dave"].user_id
    b_track = bot.recordings_dir / b_rid / f"{dave}.wav"
    fake.wait_for(lambda: (_synced_frames(b_track) or 0) >= 1.5 * SAMPLE_RATE,
                  timeout=REPLY_TIMEOUT, what="dave's turn on disk")

    # A's speakers fill the disk.
    a_rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(NONSTOP)
    try:
        notice = wait_posted(fake, [text_a], "Recording stopped:", timeout=REPLY_TIMEOUT + 60)
    finally:
        fake.run(runner.stop())
    failed_at = _failure_time(bot)

    # Said why, in words: no file path, no errno.
    assert "Recording stopped: writing the recording failed: the bot's disk is full." in notice.content, notice.content
    assert str(tmp_path) not in notice.content and "Errno" not in notice.content, notice.content
    folder = bot.recordings_dir / a_rid
    meta = manifest(folder)
    assert meta["status"] == "finished" and meta["ended_at"], meta
    names = {"alice": f"alice-{fake.config['members']['alice']}.wav", "bob": f"bob-{fake.config['members']['bob']}.wav"}
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names.values(), "manifest.json"])
    assert {s["file"] for s in meta["speakers"]} == set(names.values())
    # Every WAV is valid and holds what its speaker sent, sample-exact, up to the failure less what
    # the engine had not yet handed to the OS (at most one header-refresh interval, plus its queue).
    origin = origin_guess(runner, meta["started_at"])
    tracks = {}
    for name, file in names.items():
        tracks[name] = read_wav(folder / file)
        assert soundfile.info(str(folder / file)).frames == len(tracks[name])
    safe = failed_at - SYNC_INTERVAL - 0.5
    matched = check_tracks(tracks, runner, origin, before=safe)
    for name, wav in tracks.items():
        sent = sum(FRAME_SAMPLES for f in runner.truth(name) if f.seq is not None and f.mono_time < safe)
        assert matched[name] >= sent - 2 * FRAME_SAMPLES, f"{name}: {matched[name]} of {sent} samples matched"
        short = failed_at - origin - seconds(len(wav))
        print(f"disk full: {name}: track holds {seconds(len(wav)):.2f} s, ends {short:.2f} s before the failure at {failed_at - origin:.2f} s; all {seconds(sent):.2f} s sent up to "
              f"{safe - origin:.2f} s are in it sample-exact")
    # The files can be had: /recordings get, and the download page's ZIP and mixdown.
    check_get_serves(bot, a_rid, folder, names.values())
    link = download_link(notice)
    for part in ("", "/all.zip", "/mix.wav"):
        url = link.replace("?", f"{part}?", 1)
        status, _ = http_get(url)
        assert status == 200, f"{url}: {status}"

    # The bot still answers, and B is still recording.
    assert f"Recording `{b_rid}`" in refusal(in_b("record", "status"))
    assert refusal(bot.ask("record", "status")) == "Nothing is being recorded in this server."
    # A refused command and bad input along the way (the secrets check below covers them too).
    assert "Only members with Manage Server" in refusal(bot.ask("record", "stop", user="nobody"))
    assert "has no recording" in refusal(bot.ask("recordings", "get", {"recording_id": "../../etc/passwd"}))

    # The operator grows the disk; dave talks again in B, and B's files hold both turns.
    small_disk.resize(GROWN_SIZE)
    second_turn = _play_in(fake, b, TURN)
    assert second_turn.speakers["dave"].user_id == dave
    stopped = in_b("record", "stop")
    b_meta = manifest(bot.recordings_dir / b_rid)
    assert b_meta["status"] == "finished", b_meta
    b_wav = read_wav(zip_members(stopped)[f"dave-{dave}.wav"])
    b_origin = origin_guess(first_turn, b_meta["started_at"])
    for turn in (first_turn, second_turn):
        matched = check_tracks({"dave": b_wav}, turn, b_origin)
        assert matched["dave"] >= 0.9 * talk_samples(turn, "dave"), matched
    # A new recording can start now.
    again = bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]})
    assert "Recording" in again.content and not again.ephemeral, again.content
    assert "Nobody spoke." in bot.ask("record", "stop").content

    # The token is nowhere: not in the log, the files (WAV, manifests, index), or anything posted.
    token = fake.config["token"]
    assert token not in bot.log()
    for path in _files_under(tmp_path):
        assert token.encode() not in path.read_bytes(), path
    for channel in (text_a, b.text_id):
        for message in fake.messages(channel):
            assert token not in message.content
            assert all(token.encode() not in a.data for a in message.attachments)
    assert token.encode() not in http_get(link)[1]


def _fill_to(disk: SmallDisk, free_mb: float) -> Path:
    """A ballast file that leaves about `free_mb` MiB free on `disk`."""
    ballast = disk.path / "ballast"
    ballast.unlink(missing_ok=True)
    usage = shutil.disk_usage(disk.path)
    with open(ballast, "wb") as f:
        f.write(bytes(max(0, usage.free - int(free_mb * 1024 * 1024))))
    return ballast


def test_below_min_free_disk_a_recording_is_refused_or_stopped(
        fake: FakeDiscord, small_disk: SmallDisk, start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot(MIN_FREE_DISK_MB="1")
    voice = {"channel": fake.config["voice_channel_id"]}
    ballast = _fill_to(small_disk, 0.5)
    assert refusal(bot.ask("record", "start", voice)) == (
        "The bot's disk is almost full, so it cannot record now. Tell the bot's operator.")
    assert not [p for p in bot.recordings_dir.iterdir() if p.is_dir()], "a refused start left a folder"

    ballast.unlink()
    rid = recording_id(bot.ask("record", "start", voice))
    _fill_to(small_disk, 0.5)
    notice = wait_posted(fake, [fake.config["text_channel_id"]], "Recording stopped:", timeout=REPLY_TIMEOUT)
    assert "Recording stopped: free disk space fell below 1 MiB." in notice.content, notice.content
    assert manifest(bot.recordings_dir / rid)["status"] == "finished"


#: The bot's temporary directory: room for Python's probe file, not for the ZIP of a turn of speech.
TMP_SIZE = "64k"
ALICE_TURN = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 1.5),)),), duration=1.8)


def test_a_full_temporary_disk_at_stop_skips_the_attachment_and_still_gives_the_link(
        fake: FakeDiscord, start_bot: Callable[..., BotProcess], tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tmp", TMP_SIZE) as tmp:
        bot = start_bot(TMPDIR=str(tmp))
        rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
        play(fake, ALICE_TURN)
        reply = bot.ask("record", "stop")
        assert f"Recording `{rid}`" in reply.content, reply.content
        assert "(The ZIP could not be attached: the bot's disk is full. Use the link.)" in reply.content
        assert not reply.attachments
        status, page = http_get(download_link(reply))
        assert status == 200 and b"alice" in page
        assert bot.terminate() == 0
        assert list(tmp.iterdir()) == []  # the half-written ZIP gave its space back


#: Alice's turn, before the disk fills; then Bob's turns, the first while it is full.
ALICE_FIRST = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 1.5),)),), duration=1.8)
BOB_TURN = Scenario(speakers=(SpeakerSpec("bob", 110.0, talks=(Talk(0.3, 1.5),)),), duration=1.8)
#: Bob talking on (stopped by the test once the engine has opened his file).
BOB_TALKS_ON = Scenario(speakers=(SpeakerSpec("bob", 110.0, talks=(Talk(0.0, 60.0),)),), duration=60.0)


def _no_room_for_bob(fake: FakeDiscord, bot: BotProcess, disk: SmallDisk) -> tuple[str, Path, ScenarioRunner]:
    """Record Alice's turn, fill the disk to the last byte, let Bob (new) speak; returns the
    recording id, the ballast and Alice's turn. Bob's file is created with no room for its header."""
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    first = play(fake, ALICE_FIRST)
    alice = bot.recordings_dir / rid / f"{fake.config['members']['alice']}.wav"
    fake.wait_for(lambda: alice.exists() and (_synced_frames(alice) or 0) >= 1.2 * SAMPLE_RATE,
                  timeout=REPLY_TIMEOUT, what="alice's turn on disk")
    ballast = _fill_to(disk, 0)
    play(fake, BOB_TURN)
    fake.wait_for(lambda: "No space left" in bot.log(), timeout=REPLY_TIMEOUT, what="bob's file to meet the full disk")
    return rid, ballast, first


def _unreadable_tracks(folder: Path) -> list[str]:
    """WAV files in `folder` that libsndfile cannot open (a zero-byte or headerless track)."""
    bad = []
    for path in folder.glob("*.wav"):
        try:
            soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError):
            bad.append(f"{path.name} ({path.stat().st_size} bytes)")
    return bad


def _check_served(link: str) -> None:
    for part in ("", "/all.zip", "/mix.wav"):
        url = link.replace("?", f"{part}?", 1)
        status, _ = http_get(url)
        assert status == 200, f"{part or 'the page'}: {status}"


def test_a_new_speakers_file_on_a_full_disk_leaves_no_unreadable_track(
        fake: FakeDiscord, small_disk: SmallDisk, start_bot: Callable[..., BotProcess]) -> None:
    """No room for a new speaker's WAV header: no zero-byte track is left or listed, the
    recording goes on (Alice's file is open and fine) and Bob is recorded once there is room."""
    bot = start_bot(MIN_FREE_DISK_MB="0")
    rid, ballast, first = _no_room_for_bob(fake, bot, small_disk)
    folder = bot.recordings_dir / rid
    assert _unreadable_tracks(folder) == []
    # The operator frees space; Bob talks on until the engine has tried his file again (it does
    # within OPEN_RETRY of his last failed packet) and opened it; then a turn of his is checked.
    ballast.unlink()
    members = fake.config["members"]
    bob_file = folder / f"{members['bob']}.wav"
    talking = fake.start_scenario(BOB_TALKS_ON)
    fake.wait_for(bob_file.exists, timeout=REPLY_TIMEOUT, what="bob's file to be opened once there is room")
    fake.run(talking.stop())
    second = play(fake, BOB_TURN)
    stopped = bot.ask("record", "stop")
    assert f"Recording `{rid}`" in stopped.content, stopped.content
    meta = manifest(folder)
    files = {int(s["user_id"]): s["file"] for s in meta["speakers"]}
    assert set(files) == {members["alice"], members["bob"]}, meta
    assert _unreadable_tracks(folder) == []
    bob = read_wav(folder / files[members["bob"]])
    assert len(bob) == len(read_wav(folder / files[members["alice"]])), "tracks of equal length"
    matched = check_tracks({"bob": bob}, second, origin_guess(first, meta["started_at"]))
    assert matched["bob"] >= 0.9 * talk_samples(second, "bob"), matched
    _check_served(download_link(stopped))


def test_recovery_keeps_no_track_a_full_disk_left_without_its_header(
        fake: FakeDiscord, small_disk: SmallDisk, start_bot: Callable[..., BotProcess]) -> None:
    """Killed while Bob's file could not get its header: recovery lists and keeps only readable tracks."""
    bot = start_bot(MIN_FREE_DISK_MB="0")
    rid, ballast, _first = _no_room_for_bob(fake, bot, small_disk)
    bot.kill()
    fake.kick_from_voice(fake.config["bot_user_id"])
    folder = bot.recordings_dir / rid
    # A kill between a file's creation and its header leaves it at zero bytes, whatever the engine
    # does about a failed header; that is what recovery must cope with.
    (folder / f"{fake.config['members']['bob']}.wav").touch()
    ballast.unlink()
    bot = start_bot(MIN_FREE_DISK_MB="0")
    notice = wait_posted(fake, [fake.config["voice_channel_id"], fake.config["text_channel_id"]],
                         f"`{rid}` was repaired", REPLY_TIMEOUT)
    meta = manifest(folder)
    assert meta["status"] == "interrupted"
    assert [int(s["user_id"]) for s in meta["speakers"]] == [fake.config["members"]["alice"]], meta
    assert _unreadable_tracks(folder) == [] and not [p for p in folder.glob("*.wav") if p.stat().st_size == 0]
    _check_served(download_link(notice))
