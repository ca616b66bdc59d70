"""Notes: what a note may say, how the index keeps them (through a crash too), the
label track and chapters written from them, and how the stop summary lists them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.notes import NOTE_MAX_CHARS, NoteRefused, clean_note
from bot.storage import Manifest, Note, RecordingStore
from bot.summary import SUMMARY_NOTES, recording_summary
from tests.bot.conftest import IndexUnderTest
from tests.bot.recovering import recover
from tests.bot.wavgen import tone, write_wav

ALICE = 1234567890


@pytest.fixture
def store(tmp_path: Path, index: IndexUnderTest) -> RecordingStore:
    s = index.open(tmp_path / "recordings", retention_days=30)
    yield s
    s.close()


@pytest.mark.parametrize(("given", "kept"), [
    ("  Intro   ends ", "Intro ends"),
    ("tab\there\nnew line\u2028sep\x00nul", "tab here new line sep nul"),
    ("é" * NOTE_MAX_CHARS, "é" * NOTE_MAX_CHARS),
    ("🎙️ chapter", "🎙️ chapter"),
])
def test_a_note_is_one_line_of_text(given: str, kept: str) -> None:
    assert clean_note(given) == kept


@pytest.mark.parametrize(("given", "says"), [
    ("", "needs some text"), (" \t\n\x07 ", "needs some text"),
    ("x" * (NOTE_MAX_CHARS + 1), f"at most {NOTE_MAX_CHARS} characters long; this one has {NOTE_MAX_CHARS + 1}"),
])
def test_bad_notes_are_refused_in_one_line(given: str, says: str) -> None:
    with pytest.raises(NoteRefused) as refused:
        clean_note(given)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_notes_are_kept_in_timeline_order_up_to_the_limit(store: RecordingStore) -> None:
    rec = store.create(1, "G", 2, "vc")
    assert store.add_note(rec.id, Note(3.5, "later", ALICE, "alice"), limit=2)
    assert store.add_note(rec.id, Note(1.25, "earlier", ALICE, "alice"), limit=2)
    assert not store.add_note(rec.id, Note(4.0, "one too many", ALICE, "alice"), limit=2)
    assert [n.text for n in store.new_manifest(rec).notes] == ["earlier", "later"]


def test_a_crash_keeps_the_notes_and_writes_their_files(store: RecordingStore) -> None:
    rec = store.create(1, "G", 2, "vc")
    write_wav(rec.directory / f"{ALICE}.wav", tone(440.0, 1.0))
    store.note_speaker(rec.id, ALICE, "alice")
    store.add_note(rec.id, Note(0.5, "tab\tin it", ALICE, "alice"), limit=10)
    (closed,) = recover(store)  # what the next start does after a crash
    manifest = store.read_manifest(closed)
    assert manifest.status == "interrupted" and manifest.notes == [Note(0.5, "tab\tin it", ALICE, "alice")]
    # A tab would split the label's fields: it becomes a space there.
    assert (rec.directory / "labels.txt").read_text(encoding="utf-8") == "0.500000\t0.500000\ttab in it\n"
    assert json.loads((rec.directory / "chapters.json").read_text(encoding="utf-8")) == {
        "version": "1.2.0", "chapters": [{"startTime": 0.5, "title": "tab in it"}]}


def test_no_notes_no_marker_files(store: RecordingStore) -> None:
    rec = store.create(1, "G", 2, "vc")
    write_wav(rec.directory / f"{ALICE}.wav", tone(440.0, 1.0))
    store.note_speaker(rec.id, ALICE, "alice")
    store.finish(rec.id, store.new_manifest(rec))
    assert not (rec.directory / "labels.txt").exists() and not (rec.directory / "chapters.json").exists()


def test_a_manifest_from_before_notes_reads_as_none(store: RecordingStore) -> None:
    rec = store.create(1, "G", 2, "vc")
    data = store.new_manifest(rec).to_json()
    del data["notes"]
    assert Manifest.from_json(data).notes == []


def test_the_summary_lists_the_first_notes_shortened_and_escaped() -> None:
    started = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    notes = [Note(float(i * 61), f"**note {i}** @here " + "y" * 150, ALICE, "_al_") for i in range(SUMMARY_NOTES + 2)]
    manifest = Manifest("abc", 1, "G", 2, "vc", started, started + timedelta(minutes=9), "finished", notes=notes)
    text = recording_summary(manifest, 0, "http://x/r/abc?key=k", None)
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(lines) == SUMMARY_NOTES and f"Notes ({SUMMARY_NOTES + 2};" in text and "... and 2 more." in text
    assert lines[1].startswith(r"- 1:01 \*\*note 1\*\* @" + "\N{ZERO WIDTH SPACE}" + "here yyy")
    assert lines[1].endswith(r"y… (\_al\_)") and len(text) < 2000
