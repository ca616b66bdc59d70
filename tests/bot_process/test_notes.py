"""/record note through the real bot process: a note lands on the recording's
timeline where it was sent, measured against the speech recorded around it, and
reaches the manifest, the label track, the chapters, both ZIPs, the page and
the stop summary (escaped); bad input gets one ephemeral line."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from html import escape

import numpy as np

from sinks.opus import SAMPLE_RATE
from tests.fakediscord.scenario import Scenario, ScenarioRunner, SpeakerSpec, Talk
from tests.fakediscord.server import FakeDiscord
from tests.receive_loopback.truth import match_track, sent_frames

from .checks import (
    ALIGNMENT,
    download_link,
    http_get,
    manifest,
    origin_guess,
    read_wav,
    recording_id,
    refusal,
    wire_packets,
    zip_members,
)
from .conftest import BotProcess

#: alice talks without a pause, so her track pins down where the timeline lies.
ALICE_TALKS = Scenario(speakers=(SpeakerSpec("alice", 210.0, talks=(Talk(0.2, 3.2),)),), duration=3.5)
#: Markdown, a masked link and a mass mention, as a note's text.
HOSTILE = "**Intro** @everyone [free nitro](http://evil.example)"
ESCAPED = r"\*\*Intro\*\* @" + "\N{ZERO WIDTH SPACE}" + r"everyone \[free nitro](http://evil.example)"
SECOND = "Chapter two 🎙️ begins"


def _wait_for_talk(runner: ScenarioRunner, name: str, seconds: float, timeout: float = 30.0) -> None:
    """Until `name` has put `seconds` of frames on the wire."""
    deadline = time.monotonic() + timeout
    while True:
        frames = runner.truth(name) if name in runner.speakers else []
        sent = [f for f in frames if f.seq is not None]
        if sent and sent[-1].scheduled - sent[0].scheduled >= seconds:
            return
        assert time.monotonic() < deadline, f"{name} did not talk for {seconds} s within {timeout} s"
        time.sleep(0.02)


def _timed_note(bot: BotProcess, text: str, user: str) -> tuple[float, float, str]:
    """Send a note as `user`; returns (sent, answered) on time.monotonic and the answer."""
    sent = time.monotonic()
    answer = bot.ask("record", "note", {"text": text}, user=user)
    answered = time.monotonic()
    return sent, answered, refusal(answer)


def _speech_origin(wav: np.ndarray, runner: ScenarioRunner, name: str, guess: float) -> float:
    """Where the track's sample 0 lies on time.monotonic, from where `name`'s speech
    was found in it (its runs' offset from their capture time)."""
    runs, problems = match_track(wav, wire_packets(runner, name), sent_frames(runner.truth(name)), guess)
    assert not problems, f"{name}: " + "; ".join(problems[:5])
    offsets = [r.offset for r in runs if r.offset is not None]
    assert offsets, f"{name}: no speech found"
    return guess - float(np.median(offsets)) / SAMPLE_RATE


def test_notes_on_the_timeline_and_in_every_download(fake: FakeDiscord,
                                                     start_bot: Callable[..., BotProcess]) -> None:
    bot = start_bot()
    assert "Nothing is being recorded" in refusal(bot.ask("record", "note", {"text": "too early"}))
    rid = recording_id(bot.ask("record", "start", {"channel": fake.config["voice_channel_id"]}))
    runner = fake.start_scenario(ALICE_TALKS)

    _wait_for_talk(runner, "alice", 1.0)
    # alice has no right to record, but she is in the recorded channel.
    first = _timed_note(bot, HOSTILE, "alice")
    assert first[2].startswith("\N{MEMO} Note at ") and ESCAPED in first[2], first[2]
    _wait_for_talk(runner, "alice", 2.2)
    # The owner may record, from outside the channel.
    second = _timed_note(bot, SECOND, "owner")

    assert "Only members in" in refusal(bot.ask("record", "note", {"text": "hi"}, user="nobody"))
    assert "needs some text" in refusal(bot.ask("record", "note", {"text": " \t "}, user="alice"))
    assert "at most 200 characters" in refusal(bot.ask("record", "note", {"text": "x" * 201}, user="alice"))

    fake.run(runner.wait_done(), timeout=ALICE_TALKS.duration + 30)
    fake.run(runner.stop())
    stopped = bot.ask("record", "stop")
    assert "Nothing is being recorded" in refusal(bot.ask("record", "note", {"text": "too late"}))

    folder = bot.recordings_dir / rid
    meta = manifest(folder)
    notes = meta["notes"]
    assert [(n["text"], n["author_name"]) for n in notes] == [(HOSTILE, "alice"), (SECOND, "owner")], notes

    # Each note sits where its command arrived: after it was sent, before its answer
    # came back, on the clock the speech around it was placed with (within a frame).
    (alice_file,) = [s["file"] for s in meta["speakers"] if s["display_name"] == "alice"]
    origin = _speech_origin(read_wav(folder / alice_file), runner, "alice", origin_guess(runner, meta["started_at"]))
    for note, (sent, answered, _) in zip(notes, (first, second), strict=True):
        at = round(note["at"] * SAMPLE_RATE)
        low, high = round((sent - origin) * SAMPLE_RATE), round((answered - origin) * SAMPLE_RATE)
        assert low - ALIGNMENT <= at <= high + ALIGNMENT, (
            f"note at sample {at}, sent at {low}, answered at {high} (in the track's samples)")

    labels = (folder / "labels.txt").read_text(encoding="utf-8")
    assert labels == "".join(f"{n['at']:.6f}\t{n['at']:.6f}\t{n['text']}\n" for n in notes), labels
    chapters = json.loads((folder / "chapters.json").read_text(encoding="utf-8"))
    assert chapters == {"version": "1.2.0",
                        "chapters": [{"startTime": n["at"], "title": n["text"]} for n in notes]}, chapters

    # The summary lists the notes, escaped; the attached ZIP carries both files.
    text = stopped.content
    assert "Notes (2;" in text and f" {ESCAPED} (alice)" in text and f" {SECOND} (owner)" in text, text
    assert HOSTILE not in text, text
    attached = zip_members(stopped)
    for name in ("labels.txt", "chapters.json"):
        assert attached[name] == (folder / name).read_bytes(), name

    # The page shows and links them; the web ZIP carries them too.
    link = download_link(stopped)
    base, key = link.split("?key=")
    status, page = http_get(link)
    assert status == 200, status
    html = page.decode()
    assert escape(HOSTILE) in html and SECOND in html
    assert html.count('class="note"') == 2 and "labels.txt" in html and "chapters.json" in html
    for name in ("labels.txt", "chapters.json"):
        status, body = http_get(f"{base}/{name}?key={key}")
        assert status == 200 and body == (folder / name).read_bytes(), name
    status, body = http_get(f"{base}/all.zip?key={key}")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.read("labels.txt") == labels.encode()
        assert json.loads(archive.read("chapters.json")) == chapters
