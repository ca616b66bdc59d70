"""Finished recording folders as the bot leaves them: real WAV tracks, the
manifest, the notes' marker files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.storage import Manifest, Note, Speaker
from bot.storage.markers import write_markers
from tests.bot.wavgen import tone, write_wav

STARTED = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def finished_recording(folder: Path, seconds: dict[str, float]) -> Manifest:
    """A finished recording in ``folder`` with one tone track per display name
    (of the given length: 60 s of 48 kHz 16-bit mono is 5.5 MiB) and two notes."""
    folder.mkdir(parents=True, exist_ok=True)
    speakers = []
    for index, (name, length) in enumerate(seconds.items()):
        speaker = Speaker(1000 + index, name)
        write_wav(folder / speaker.file, tone(220.0 * (index + 1), length, amplitude=0.3))
        speakers.append(speaker)
    notes = [Note(1.0, "intro", 1000, "host"), Note(2.5, "topic", 1000, "host")]
    manifest = Manifest("rec1", 42, "guild", 43, "voice", STARTED, STARTED + timedelta(minutes=5), "finished",
                        speakers=speakers, notes=notes)
    write_markers(folder, notes)
    manifest.write(folder)
    return manifest
