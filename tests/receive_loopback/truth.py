"""Compare a recorded WAV with the ground truth of what a simulated speaker sent.

The reference is an offline decode of exactly the packets the engine was
handed: one fresh libopus decoder per SSRC, packets in sequence order,
duplicates once. Each run of consecutive packets (no gap in sequence or in
RTP time) must appear in the WAV sample for sample, near where its first
frame was captured: the start of that frame's 20 ms slot at the speaker, on
the shared ``time.monotonic`` clock. (Not its send time: a sender that sends
late still stamps the frame with its slot's RTP time, and the engine places
it by that.)

A sender that sends late (the loopback speakers share the machine, and under
load their loop falls behind) is judged by what the engine could know: only
RTP time and arrivals, never capture time. Its contract (README, "How it
works"): a talk burst is anchored on the fastest of the first frames it holds,
and the anchor then follows the fastest arrivals of about the last second
within 10 ms, plus at most 10 ms of slip. So every frame gets a ``floor``:
how late after capture the fastest of the last :data:`FLOOR_WINDOW` arrivals
of its talk burst (itself included) came. A frame must sit no earlier than
20 ms before its capture time and no later than 20 ms after its floor; for
audio that came on time the floor is about 0 and that is the plain 20 ms
budget around capture time. Where the floor drops (on-time frames after late
ones) the anchor moves back, and what the slip cannot take is cut: a run may
lose as many frames as its highest floor spans, besides ``_TRIMMED``.

A packet overtaken by more than the engine's reorder window, or one still on
its way when the engine took a quiet stream for finished, comes after its slot
was committed: the engine counts it ``late`` and never decodes it, so the
reference must leave it out. Which ones that were depends on the worker's
timing; :func:`match_track_without_late` finds them among the overtaken
packets, no more than the engine counted.

A sequence gap is concealed by the engine (PLC, then FEC from the next
packet), which changes the decoder's state and so every sample after it.
How many frames it conceals depends on how much room the timeline left,
which arrival jitter decides; so the reference tries each concealment the
engine could have made (``k`` PLC frames, ``k`` up to five, with or without
FEC) and keeps the one under which the next run is found in the WAV exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sinks import VoicePacket
from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE, OpusDecoder
from sinks.packet import seq_delta, ts_delta
from tests.fakediscord.speakers import SentFrame

__all__ = ["ALIGNMENT", "FLOOR_WINDOW", "Run", "match_track", "match_track_without_late", "sent_frames"]

#: How far a run may sit from its capture time: one 20 ms frame.
ALIGNMENT = FRAME_SAMPLES
#: How far from its capture time a run is searched for (the test's assertion is tighter).
SEARCH = SAMPLE_RATE // 5
#: Arrivals a frame's floor looks back over: the timeline's shortest window (two of its
#: 25-packet blocks make its longest), so the anchor can never be later than their fastest.
FLOOR_WINDOW = 25
_MAX_PLC = 5

Action = Callable[[OpusDecoder], None]


@dataclass
class Run:
    """Consecutive packets of one SSRC, where they are in the WAV and how far from their capture time."""

    ssrc: int
    packets: list[VoicePacket]
    lost_before: int
    pcm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    position: int | None = None
    #: position minus the capture time of the first frame, in samples (for a run the
    #: anchor moved inside, the frame farthest from its capture time).
    offset: int | None = None
    #: Each packet's floor (samples; see the module doc), in the run's order.
    floors: list[int] = field(default_factory=list)
    #: Each frame's offset from its capture time (samples), None where the engine cut it
    #: or it decodes to silence (which sits anywhere silent).
    offsets: list[int | None] = field(default_factory=list)
    #: True when the run decodes to sound but was not found in the WAV.
    missing: bool = False

    @property
    def late(self) -> int:
        """The highest floor of the run: how late the engine may have had to place part of it."""
        return max(self.floors, default=0)

    @property
    def placed_within(self) -> bool:
        """Whether every frame sits within :data:`ALIGNMENT` of where the engine could know it belongs."""
        return all(-ALIGNMENT <= o <= f + ALIGNMENT for o, f in zip(self.offsets, self.floors) if o is not None)

    @property
    def label(self) -> str:
        return f"run of {len(self.packets)} from seq {self.packets[0].sequence} (ssrc {self.ssrc})"


def sent_frames(truth: list[SentFrame]) -> dict[tuple[int, int], SentFrame]:
    """The frames that went on the wire, by (ssrc, seq)."""
    return {(f.ssrc, f.seq): f for f in truth if f.seq is not None}


def _runs(packets: list[VoicePacket]) -> list[Run]:
    """One user's packets as runs, each SSRC's in sequence order, each sequence once."""
    by_ssrc: dict[int, list[VoicePacket]] = {}
    for p in packets:
        by_ssrc.setdefault(p.ssrc, []).append(p)
    runs: list[Run] = []
    for ssrc, stream in by_ssrc.items():
        first = stream[0].sequence
        by_ext: dict[int, VoicePacket] = {}
        for p in stream:
            by_ext.setdefault(first + seq_delta(p.sequence, first), p)
        prev: tuple[int, VoicePacket] | None = None
        for ext, packet in sorted(by_ext.items()):
            lost = ext - prev[0] - 1 if prev is not None else 0
            # A sender holding media during a DAVE transition keeps its sequence but not its timestamps.
            step = ts_delta(packet.timestamp, prev[1].timestamp) if prev is not None else 0
            if prev is None or lost or step != FRAME_SAMPLES:
                runs.append(Run(ssrc, [], lost))
            runs[-1].packets.append(packet)
            prev = (ext, packet)
    return runs


def _concealments(lost: int, gap: int, opus: bytes) -> list[list[Action]]:
    """What the engine may do to the decoder for ``lost`` frames before ``opus``; most likely first."""
    if lost == 0:
        return [[]]
    fec_first = gap >= FRAME_SAMPLES
    likely_plc = min(lost - 1, _MAX_PLC, (gap - fec_first * FRAME_SAMPLES) // FRAME_SAMPLES)
    options: list[tuple[int, bool]] = [(max(likely_plc, 0), fec_first)]
    for plc in range(min(lost - 1, _MAX_PLC), -1, -1):
        for fec in (True, False):
            if (plc, fec) not in options:
                options.append((plc, fec))

    def plan(plc: int, fec: bool) -> list[Action]:
        steps: list[Action] = [lambda d: d.conceal(FRAME_SAMPLES)] * plc
        if fec:
            steps.append(lambda d: d.conceal(FRAME_SAMPLES, opus))
        return steps

    return [plan(plc, fec) for plc, fec in options]


def _find(wav: np.ndarray, frame: np.ndarray, around: int, reach: int = SEARCH) -> int | None:
    """Start of the exact occurrence of ``frame`` in ``wav`` nearest to ``around``, within ``reach``."""
    lo = max(0, around - reach)
    hi = min(len(wav), around + reach + len(frame))
    if hi - lo < len(frame):
        return None
    windows = np.lib.stride_tricks.sliding_window_view(wav[lo:hi], len(frame))
    hits = np.flatnonzero((windows == frame).all(axis=1)) + lo
    if len(hits) == 0:
        return None
    return int(hits[np.argmin(np.abs(hits - around))])


def _place(wav: np.ndarray, run: Run, pcm: np.ndarray, expected: int) -> bool:
    """Locate ``pcm`` (the run's decode) near ``expected``; True when it is there exactly."""
    frames = pcm.reshape(-1, FRAME_SAMPLES)
    loudest = int(np.abs(frames.astype(np.int32)).max(axis=1).argmax())
    floor = run.floors[loudest]
    hit = _find(wav, frames[loudest], expected + floor + loudest * FRAME_SAMPLES, SEARCH + floor)
    if hit is None:
        return False
    position = hit - loudest * FRAME_SAMPLES
    if not np.array_equal(wav[position:position + len(pcm)], pcm):
        return False
    run.pcm, run.position, run.offset = pcm, position, position - expected
    run.offsets = [run.offset if frame.any() else None for frame in frames]
    return True


#: Frames of one run the engine may cut short when its timeline re-anchors (a late first packet),
#: besides those its lateness spans.
_TRIMMED = 2


def _place_piecewise(wav: np.ndarray, run: Run, pcm: np.ndarray, expected: int) -> bool:
    """Like :func:`_place`, for a run the timeline re-anchored inside: every frame whole
    where it belongs, except at most ``_TRIMMED`` (plus the frames its highest floor spans)
    cut short where the anchor moved back. ``run.offset`` becomes the worst offset of
    any frame."""
    frames = pcm.reshape(-1, FRAME_SAMPLES)
    position: int | None = None
    worst, trimmed, first = 0, 0, None
    offsets: list[int | None] = []
    allowed = _TRIMMED + run.late // FRAME_SAMPLES
    for k, frame in enumerate(frames):
        if position is not None and np.array_equal(wav[position:position + FRAME_SAMPLES], frame):
            # A silent frame matches any silence: where it sits says nothing.
            offsets.append(position - (expected + k * FRAME_SAMPLES) if frame.any() else None)
            position += FRAME_SAMPLES
            continue
        due, floor = expected + k * FRAME_SAMPLES, run.floors[k]
        hit = _find(wav, frame, due + floor, SEARCH + floor) if frame.any() else None
        if hit is None:
            if position is None and not frame.any():
                # Silence after a cut: nothing to locate it by; the next sound found
                # sample-exact shows the engine decoded it.
                offsets.append(None)
                continue
            # A frame the anchor's move back cut short is not whole anywhere, silent or not
            # (a silent one's cut tail runs into the next frame): both count as trimmed.
            trimmed += 1
            if trimmed > allowed:
                return False
            offsets.append(None)
            position = None
            continue
        offset = hit - due
        offsets.append(offset)
        worst = offset if abs(offset) > abs(worst) else worst
        first = hit - k * FRAME_SAMPLES if first is None else first
        position = hit + FRAME_SAMPLES
    if first is None:
        return False
    run.pcm, run.position, run.offset, run.offsets = pcm, first, worst, offsets
    return True


def _floors(packets: list[VoicePacket], sent: dict[tuple[int, int], SentFrame]) -> dict[tuple[int, int], int]:
    """Each packet's floor (samples): the least lateness after capture among the last
    :data:`FLOOR_WINDOW` arrivals of its stream's talk burst, itself included. ``packets``
    are in arrival order; a burst starts with the first voice frame after silence frames."""
    windows: dict[int, list[int]] = {}
    floors: dict[tuple[int, int], int] = {}
    for p in packets:
        key = (p.ssrc, p.sequence)
        frame = sent[key]
        before = sent.get((p.ssrc, (p.sequence - 1) & 0xFFFF))
        window = windows.setdefault(p.ssrc, [])
        if before is not None and before.silence and not frame.silence:
            window.clear()
        window.append(max(0, round((p.received_at - frame.scheduled) * SAMPLE_RATE)))
        del window[:-FLOOR_WINDOW]
        floors.setdefault(key, min(window))
    return floors


def match_track(
    wav: np.ndarray, packets: list[VoicePacket], sent: dict[tuple[int, int], SentFrame], origin: float,
) -> tuple[list[Run], list[str]]:
    """Find every run of ``packets`` in ``wav``; return the runs and what is wrong (empty: all there).

    ``origin`` is the sink's ``started_at``. A run that decodes to pure
    silence cannot be located; it is kept unplaced (``position`` None).
    """
    runs = _runs(packets)
    floors = _floors(packets, sent)
    for run in runs:
        run.floors = [floors[(p.ssrc, p.sequence)] for p in run.packets]
    problems: list[str] = []
    history: dict[int, list[Action]] = {}
    previous: dict[int, VoicePacket] = {}
    for run in runs:
        steps = history.setdefault(run.ssrc, [])
        before = previous.get(run.ssrc)
        gap = ts_delta(run.packets[0].timestamp, before.timestamp) - FRAME_SAMPLES if before else 0
        expected = round((sent[(run.ssrc, run.packets[0].sequence)].scheduled - origin) * SAMPLE_RATE)
        chosen: list[Action] | None = None
        for concealment in _concealments(run.lost_before, gap, run.packets[0].opus):
            decoder = OpusDecoder(1)
            for step in steps + concealment:
                step(decoder)
            pcm = np.concatenate([decoder.decode(p.opus)[:, 0].copy() for p in run.packets])
            if chosen is None:
                chosen, run.pcm = concealment, pcm  # the likely one, if nothing matches
            if not pcm.any():
                break
            if _place(wav, run, pcm, expected) or _place_piecewise(wav, run, pcm, expected):
                chosen = concealment
                break
        else:
            run.missing = True
            problems.append(f"{run.label}: not found sample-exact within {SEARCH} samples of {expected} "
                            f"(plus its floors, up to {run.late} samples: frames that arrived late)")
        assert chosen is not None
        steps.extend(chosen)
        steps.extend((lambda d, opus=p.opus: d.decode(opus)) for p in run.packets)
        previous[run.ssrc] = run.packets[-1]
    return runs, problems


def _overtaken(packets: list[VoicePacket]) -> list[VoicePacket]:
    """Packets that arrived after a later one of their stream (in arrival order)."""
    highest: dict[int, int] = {}
    out = []
    for p in packets:
        top = highest.get(p.ssrc)
        if top is not None and seq_delta(top, p.sequence) > 0:
            out.append(p)
        else:
            highest[p.ssrc] = p.sequence
    return out


def match_track_without_late(
    wav: np.ndarray, packets: list[VoicePacket], sent: dict[tuple[int, int], SentFrame], origin: float,
    late: int,
) -> tuple[list[Run], list[str], list[VoicePacket]]:
    """:func:`match_track`, where the engine counted ``late`` packets as arriving after their
    slot was committed (overtaken by more than its reorder window, or held while it took a
    quiet stream for finished) and so never decoded them.

    Which ones depends on the worker's timing, so while a run is missing, overtaken
    packets at or before it are left out of the reference one at a time, nearest first,
    keeping each that lets the run be found; at most ``late`` are left out. Returns the
    runs, what is still wrong, and the packets left out.
    """
    left_out: list[VoicePacket] = []
    runs, problems = match_track(wav, packets, sent, origin)
    while problems and len(left_out) < late:
        bad = next(r for r in runs if r.missing)
        end = bad.packets[-1].sequence
        overtaken = sorted((p for p in _overtaken(packets) if p.ssrc == bad.ssrc and seq_delta(end, p.sequence) >= 0),
                           key=lambda p: seq_delta(end, p.sequence))
        inside = [p for p in overtaken if seq_delta(p.sequence, bad.packets[0].sequence) >= 0]
        # One at a time, nearest first; then all of those inside the run together.
        tries = [[p] for p in overtaken] + ([inside] if len(inside) > 1 else [])
        for gone in tries:
            if len(left_out) + len(gone) > late:
                continue
            trial = [p for p in packets if all(p is not g for g in gone)]
            trial_runs, trial_problems = match_track(wav, trial, sent, origin)
            if len(trial_problems) < len(problems):
                packets, runs, problems = trial, trial_runs, trial_problems
                left_out += gone
                break
        else:
            break
    return runs, problems, left_out
