"""The stop summary attaches the best ZIP that fits the server's upload limit:
WAV, else FLAC, else Ogg Opus; it says which, and always gives the link."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import numpy as np
import soundfile

from tests.fakediscord.messages import Message
from tests.fakediscord.scenario import Scenario, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord

from .checks import download_link, http_get, play, read_wav, recording_id
from .conftest import BotProcess

ALICE_TURN = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.3, 1.5),)),), duration=6.0)
#: What the bot keeps free of the limit for the upload's envelope (bot/announce.py).
MARGIN = 64 * 1024


def the_zip(message: Message) -> tuple[str, dict[str, bytes]]:
    (attached,) = message.attachments
    with zipfile.ZipFile(io.BytesIO(attached.data)) as archive:
        assert archive.testzip() is None
        return attached.filename, {name: archive.read(name) for name in archive.namelist()}


def test_the_summary_attaches_the_best_zip_that_fits(fake: FakeDiscord,
                                                     start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    play(fake, ALICE_TURN)
    stopped = bot.ask("record", "stop")
    folder = bot.recordings_dir / rid
    (track,) = folder.glob("alice-*.wav")
    wav = read_wav(track)
    assert "(Attached: every track as WAV, in a ZIP.)" in stopped.content, stopped.content
    name, members = the_zip(stopped)
    assert name == f"recording-{rid}.zip" and members[track.name] == track.read_bytes()

    # The WAV ZIP (576 KB) no longer fits; the FLAC of one turn of speech does.
    fake.set_upload_limit(MARGIN + 300 * 1024)
    got = bot.ask("recordings", "get", {"recording_id": rid})
    assert "(Attached: every track as FLAC, in a ZIP.)" in got.content, got.content
    assert http_get(download_link(got))[0] == 200
    name, members = the_zip(got)
    assert name == f"recording-{rid}-flac.zip"
    flac = members[track.name.replace(".wav", ".flac")]
    np.testing.assert_array_equal(read_wav(flac), wav)  # lossless, sample for sample
    flac_zip = len(got.attachments[0].data)

    # Smaller than that FLAC ZIP: Ogg Opus, as long as the track.
    fake.set_upload_limit(MARGIN + flac_zip - 1)
    got = bot.ask("recordings", "get", {"recording_id": rid})
    assert "(Attached: every track as Ogg Opus, in a ZIP.)" in got.content, got.content
    name, members = the_zip(got)
    assert name == f"recording-{rid}-ogg.zip"
    info = soundfile.info(io.BytesIO(members[track.name.replace(".wav", ".ogg")]))
    assert (info.samplerate, info.frames) == (48000, len(wav))

    # Nothing fits: no attachment, the reason, and the link.
    fake.set_upload_limit(MARGIN + 100)
    got = bot.ask("recordings", "get", {"recording_id": rid})
    assert not got.attachments
    assert "(The ZIP is larger than this server's upload limit: use the link.)" in got.content, got.content
    assert http_get(download_link(got))[0] == 200
    # Each format was encoded once, whatever asked for it again.
    assert bot.log().count(f"encoded {rid}/{track.name.replace('.wav', '.flac')}") == 1
    assert bot.log().count(f"encoded {rid}/{track.name.replace('.wav', '.ogg')}") == 1
    assert bot.terminate() == 0
