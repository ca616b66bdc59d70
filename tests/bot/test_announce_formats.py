"""The stop summary's attachment follows the server's default download format
and its "attach files" choice, as the server set them with /settings."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bot.announce import Announcer
from bot.config import Settings
from bot.guild_config import GuildConfig
from bot.storage import AsyncRecordingStore, Manifest, RecordingStore
from bot.web.encoder import Encoder
from tests.bot.wavgen import bursts, write_wav

LIMIT = 10 * 1024 * 1024


@pytest.fixture
def recorded(tmp_path: Path):
    store = RecordingStore(tmp_path / "recordings", retention_days=30)
    rec = store.create(1, "Guild", 7, "general")
    samples = bursts(440.0, 4.0, [(0.5, 2.0)], amplitude=0.4)
    write_wav(rec.directory / "201.wav", samples)
    store.note_speaker(rec.id, 201, "Eve")
    manifest = store.finish(rec.id, store.new_manifest(rec))
    encoder = Encoder()
    astore = AsyncRecordingStore(store)
    config = GuildConfig(astore, Settings.from_env({"DISCORD_TOKEN": "x" * 24}, dotenv_path=None))
    try:
        yield Announcer(astore, "http://downloads.example", encoder, config), config, manifest, samples
    finally:
        encoder.shutdown()
        store.close()


async def chosen_then_summary(config: GuildConfig, announcer: Announcer, manifest: Manifest, **choice: object):
    """The server makes its ``/settings`` choice, then a recording of it stops."""
    await config.change(manifest.guild_id, **choice)
    return await announcer.summary_and_zip(manifest, LIMIT)


def attached(file) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(file.fp.read())) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("default, label", [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "Ogg Opus"), ("mp3", "MP3")])
def test_the_attachment_is_in_the_servers_default_format(recorded, default: str, label: str) -> None:
    announcer, config, manifest, samples = recorded
    text, file = asyncio.run(chosen_then_summary(config, announcer, manifest, download_format=default))
    assert f"(Attached: every track as {label}, in a ZIP.)" in text and "http://downloads.example/r/" in text
    members = attached(file)
    decoded, _ = sf.read(io.BytesIO(members[f"eve-201.{default}"]), dtype="int16")
    assert len(decoded) == len(samples)
    if default in ("wav", "flac"):
        np.testing.assert_array_equal(decoded, samples)


def test_no_attachment_when_the_server_wants_none(recorded) -> None:
    announcer, config, manifest, _ = recorded
    text, file = asyncio.run(chosen_then_summary(config, announcer, manifest, attach_files=False))
    assert file is None and "http://downloads.example/r/" in text and "Attached" not in text
