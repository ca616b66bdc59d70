"""What the bot's answers and files are checked against: ids, links, ZIPs, WAVs, manifests.

A speaker's WAV is compared with an offline decode of exactly the frames the
simulated speaker put on the wire (``tests.receive_loopback.truth.match_track``): every
run of consecutive packets must appear sample for sample, and every run of
every speaker must sit at the same offset from its capture time (within one
20 ms frame). Swapped or shifted tracks fail both.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from sinks import VoicePacket
from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE, OpusDecoder
from sinks.packet import ts_delta
from tests.fakediscord.messages import Message
from tests.fakediscord.scenario import Scenario, ScenarioRunner
from tests.fakediscord.server import FakeDiscord
from tests.receive_loopback.truth import match_track, sent_frames

#: Runs of all speakers must agree on their offset from capture time within one frame.
ALIGNMENT = FRAME_SAMPLES

_RECORDING_ID = re.compile(r"recording `([^`]+)`", re.IGNORECASE)
_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/r/[^\s?]+\?key=[^\s)>]+)")


def play(fake: FakeDiscord, scenario: Scenario) -> ScenarioRunner:
    """Play a finite `scenario` to its end, then take its speakers out of voice;
    returns the runner with the ground truth."""
    runner = fake.start_scenario(scenario)
    fake.run(runner.wait_done(), timeout=scenario.duration + 30)
    fake.run(runner.stop())
    return runner


def refusal(message: Message) -> str:
    """The text of an ephemeral refusal (asserting it is one)."""
    assert message.ephemeral, f"expected an ephemeral reply, got {message.content!r}"
    return message.content


def recording_id(message: Message) -> str:
    """The recording id the bot named in `message`."""
    found = _RECORDING_ID.search(message.content)
    assert found, f"no recording id in {message.content!r}"
    return found.group(1)


def download_link(message: Message) -> str:
    """The download link in `message`."""
    found = _LINK.search(message.content)
    assert found, f"no download link in {message.content!r}"
    return found.group(1)


def http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """GET `url`; returns (status, body), also for 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def zip_members(message: Message) -> dict[str, bytes]:
    """The members of the one ZIP attached to `message`."""
    zips = [a for a in message.attachments if a.filename.endswith(".zip")]
    assert len(zips) == 1, f"expected one ZIP attachment, got {[a.filename for a in message.attachments]}"
    with zipfile.ZipFile(io.BytesIO(zips[0].data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def manifest(directory: Path) -> dict[str, Any]:
    """The recording's manifest.json as JSON."""
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def read_wav(data: bytes | Path) -> np.ndarray:
    """A mono 48 kHz int16 track."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    audio, rate = soundfile.read(source, dtype="int16")
    assert rate == SAMPLE_RATE
    assert audio.ndim == 1, f"expected a mono track, got shape {audio.shape}"
    return audio


def wire_packets(runner: ScenarioRunner, name: str, before: float | None = None) -> list[VoicePacket]:
    """Every frame `name` put on the wire (before monotonic time `before`), as the
    bot's engine would be handed it."""
    return [VoicePacket(f.seq, f.timestamp, f.opus, f.mono_time, f.ssrc)
            for f in runner.truth(name) if f.seq is not None and (before is None or f.mono_time < before)]


def origin_guess(runner: ScenarioRunner, started_at: str) -> float:
    """The recording start on ``time.monotonic`` (shared by all processes on Linux),
    from the manifest's wall-clock start and the speakers' paired clock readings."""
    frames = [f for s in runner.speakers.values() for f in s.frames]
    wall_minus_mono = float(np.median([f.wall_time - f.mono_time for f in frames]))
    return datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp() - wall_minus_mono


def check_tracks(tracks: dict[str, np.ndarray], runner: ScenarioRunner, origin: float,
                 before: float | None = None) -> dict[str, int]:
    """Assert each named track holds exactly what that speaker sent (before monotonic
    time `before`, if given), all at one offset from capture time: within one frame of
    each other, where a frame a loaded speaker sent late may sit as much later as the
    engine could know it was late (its floor: the late-sender contract of
    :mod:`tests.receive_loopback.truth`; 0 for audio sent on time).

    Returns the samples matched sample-exact per speaker.
    """
    offsets: list[tuple[str, int]] = []
    # Per audible frame: its offset, and its offset less its floor.
    frames: list[tuple[int, int]] = []
    matched: dict[str, int] = {}
    for name, wav in tracks.items():
        packets = wire_packets(runner, name, before)
        assert packets, f"{name} sent nothing"
        runs, problems = match_track(wav, packets, sent_frames(runner.truth(name)), origin)
        assert not problems, f"{name}: " + "; ".join(problems[:5])
        placed = [r for r in runs if r.offset is not None]
        assert placed, f"{name}: no audible run found"
        offsets += [(name, r.offset) for r in placed]  # type: ignore[misc]
        frames += [(o, o - f) for r in placed for o, f in zip(r.offsets, r.floors) if o is not None]
        matched[name] = sum(len(r.pcm) for r in placed)
    spread = max(due for _, due in frames) - min(o for o, _ in frames)
    assert spread <= ALIGNMENT, (f"runs disagree on their offset from capture time by {spread} samples "
                                 f"(beyond what late sends explain): {offsets}")
    return matched


def talk_samples(runner: ScenarioRunner, name: str) -> int:
    """Samples of real (non-silence) audio `name` put on the wire."""
    return sum(FRAME_SAMPLES for f in runner.truth(name) if f.seq is not None and not f.silence)


def seconds(samples: int) -> float:
    """Samples at 48 kHz as seconds."""
    return samples / SAMPLE_RATE


@dataclass(frozen=True)
class TailLoss:
    """How much of what a speaker sent before some moment a cut-short track holds."""

    #: Seconds of the speaker's last continuous run found sample-exact in the WAV.
    kept: float
    #: Seconds of that run, sent before the moment, that the WAV does not hold.
    missing: float


#: How far (samples) a frame may sit from where the previous one ended: the engine
#: re-anchors a stream whose arrivals drift more than 10 ms from its RTP clock
#: (a loaded machine delays a burst), moving the rest of the run by that much.
_REANCHOR_SLACK = 10 * FRAME_SAMPLES


def _find_frame(wav: np.ndarray, frame: np.ndarray, expected: int) -> int | None:
    """Where `frame` stands in `wav` sample-exact: at `expected`, else nearest to it
    within :data:`_REANCHOR_SLACK`; None if nowhere there."""
    if np.array_equal(wav[expected:expected + FRAME_SAMPLES], frame):
        return expected
    low, high = max(0, expected - _REANCHOR_SLACK), min(len(wav) - FRAME_SAMPLES, expected + _REANCHOR_SLACK)
    if high < low:
        return None
    # Candidates share the frame's first two samples; only they are compared whole.
    window = wav[low:high + 2]
    starts = np.flatnonzero((window[:-1] == frame[0]) & (window[1:] == frame[1])) + low
    matches = [int(p) for p in starts if p <= high and np.array_equal(wav[p:p + FRAME_SAMPLES], frame)]
    return min(matches, key=lambda p: abs(p - expected)) if matches else None


#: Shortest tail of a frame :func:`_head_cut` accepts (1.3 ms).
_MIN_TAIL = 64


def _head_cut(wav: np.ndarray, frame: np.ndarray, at: int) -> int | None:
    """How many samples of `frame`'s head are missing where it stands at `at`, cut
    because the engine moved its anchor back (more than it lets a track slip); None
    if no tail of `frame` stands there."""
    window = wav[at:at + FRAME_SAMPLES]
    if len(window) < _MIN_TAIL:
        return None
    # Candidates share the window's first two samples; a tail shorter than _MIN_TAIL
    # could match by chance.
    starts = np.flatnonzero((frame[1:-1] == window[0]) & (frame[2:] == window[1])) + 1
    for cut in starts[starts <= FRAME_SAMPLES - _MIN_TAIL]:
        rest = FRAME_SAMPLES - int(cut)
        if len(window) >= rest and np.array_equal(window[:rest], frame[cut:]):
            return int(cut)
    return None


def tail_loss(wav: np.ndarray, runner: ScenarioRunner, name: str, origin: float, end: float,
              settled: float = 2.0) -> TailLoss:
    """Measure what `wav` lost at its end of the audio `name` sent before monotonic time `end`.

    For a speaker who talked without pause (one SSRC, no sequence gap): every
    run sent before ``end - settled`` must be in the WAV sample-exact (as in
    :func:`check_tracks`); the last run is then decoded as the engine decodes
    it (one decoder, every packet in order) and compared frame by frame from
    where it starts in the WAV, each where the one before ended or, after the
    engine re-anchored the stream, near there (:func:`_find_frame`). A frame
    whose head a backward re-anchor cut (:func:`_head_cut`) counts those samples
    as missing. Frames from the first one not found on count as missing,
    and the WAV must end there (no foreign audio after the kept part).
    """
    packets = wire_packets(runner, name, end)
    sequences = [p.sequence for p in packets]
    assert len({p.ssrc for p in packets}) == 1, f"{name}: expected one stream"
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(sequences, sequences[1:])), f"{name}: sequence gap"
    sent = sent_frames(runner.truth(name))
    early = [p for p in packets if sent[(p.ssrc, p.sequence)].mono_time < end - settled]
    runs, problems = match_track(wav, early, sent, origin)
    assert not problems, f"{name}: " + "; ".join(problems[:5])
    last = runs[-1]
    assert last.position is not None, f"{name}: the last settled run was not placed"
    first = next(i for i, p in enumerate(packets) if p.sequence == last.packets[0].sequence)
    decoder = OpusDecoder(1)
    pcm = [decoder.decode(p.opus)[:, 0].copy() for p in packets]
    # The engine starts a run anew wherever RTP time jumps (a DAVE transition's held frames).
    tail = first
    while tail + 1 < len(packets) and ts_delta(packets[tail + 1].timestamp, packets[tail].timestamp) == FRAME_SAMPLES:
        tail += 1
    frames = pcm[first:tail + 1]
    kept = 0  # samples
    at = last.position
    for frame in frames:
        found = _find_frame(wav, frame, at)
        if found is not None:
            kept += FRAME_SAMPLES
            at = found + FRAME_SAMPLES
            continue
        cut = _head_cut(wav, frame, at)
        if cut is None:
            break
        kept += FRAME_SAMPLES - cut
        at += FRAME_SAMPLES - cut
    assert len(wav) - at < FRAME_SAMPLES, (
        f"{name}: {len(wav) - at} samples after the last exact frame "
        f"(of {len(frames)} frames, {kept} samples kept)")
    return TailLoss(kept=seconds(kept), missing=seconds(len(frames) * FRAME_SAMPLES - kept))


@contextlib.contextmanager
def index_locked(index: Path) -> Iterator[None]:
    """Hold the SQLite index's write lock, as another process writing to it would: the
    bot's writes give up after its busy timeout (``INDEX_BUSY_SECONDS``, 10 s by default)
    with "database is locked"."""
    db = sqlite3.connect(index, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        db.close()  # rolls back and lets go of the lock


def wait_posted(fake: FakeDiscord, channel_ids: list[int], needle: str, timeout: float) -> Message:
    """The first message containing `needle` posted in any of `channel_ids`, waiting up to `timeout` s."""
    def find() -> Message | None:
        return next((m for c in channel_ids for m in fake.messages(c) if needle in m.content), None)
    return fake.wait_for(find, timeout=timeout, what=f"a message containing {needle!r}")


def check_get_serves(bot: Any, rid: str, folder: Path, filenames: Any) -> None:
    """``/recordings get`` of `rid` answers privately with a ZIP holding exactly
    `filenames` of `folder`, byte for byte."""
    got = bot.ask("recordings", "get", {"recording_id": rid})
    assert got.ephemeral and f"Recording `{rid}`" in got.content, got.content
    assert zip_members(got) == {name: (folder / name).read_bytes() for name in filenames}
