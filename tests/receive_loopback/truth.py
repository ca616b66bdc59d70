"""Compare a recorded WAV with the ground truth of what a simulated speaker sent.

The reference is an offline decode of exactly the packets the engine was
handed: one fresh libopus decoder per SSRC, packets in sequence order,
duplicates once. Each run of consecutive packets (no gap in sequence or in
RTP time) must appear in the WAV sample for sample, near where its first
frame was captured: the start of that frame's 20 ms slot at the speaker, on
the shared ``time.monotonic`` clock. (Not its send time: a sender that sends
late still stamps the frame with its slot's RTP time, and the engine places
it by that.)

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

__all__ = ["ALIGNMENT", "Run", "match_track", "sent_frames"]

#: How far a run may sit from its capture time: one 20 ms frame.
ALIGNMENT = FRAME_SAMPLES
#: How far from its capture time a run is searched for (the test's assertion is tighter).
SEARCH = SAMPLE_RATE // 5
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
    #: position minus the capture time of the first frame, in samples.
    offset: int | None = None

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


def _find(wav: np.ndarray, frame: np.ndarray, around: int) -> int | None:
    """Start of the exact occurrence of ``frame`` in ``wav`` nearest to ``around``."""
    lo = max(0, around - SEARCH)
    hi = min(len(wav), around + SEARCH + len(frame))
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
    hit = _find(wav, frames[loudest], expected + loudest * FRAME_SAMPLES)
    if hit is None:
        return False
    position = hit - loudest * FRAME_SAMPLES
    if not np.array_equal(wav[position:position + len(pcm)], pcm):
        return False
    run.pcm, run.position, run.offset = pcm, position, position - expected
    return True


#: Frames of one run the engine may cut short when its timeline re-anchors (a late first packet).
_TRIMMED = 2


def _place_piecewise(wav: np.ndarray, run: Run, pcm: np.ndarray, expected: int) -> bool:
    """Like :func:`_place`, for a run the timeline re-anchored inside: every frame whole
    where it belongs, except at most ``_TRIMMED`` cut short where the anchor moved back.
    ``run.offset`` becomes the worst offset of any frame."""
    frames = pcm.reshape(-1, FRAME_SAMPLES)
    position: int | None = None
    worst, trimmed, first = 0, 0, None
    for k, frame in enumerate(frames):
        if position is not None and np.array_equal(wav[position:position + FRAME_SAMPLES], frame):
            position += FRAME_SAMPLES
            continue
        hit = _find(wav, frame, expected + k * FRAME_SAMPLES) if frame.any() else None
        if hit is None:
            trimmed += 1
            if trimmed > _TRIMMED or not frame.any():
                return False
            position = None
            continue
        offset = hit - (expected + k * FRAME_SAMPLES)
        worst = offset if abs(offset) > abs(worst) else worst
        first = hit - k * FRAME_SAMPLES if first is None else first
        position = hit + FRAME_SAMPLES
    if first is None:
        return False
    run.pcm, run.position, run.offset = pcm, first, worst
    return True


def match_track(
    wav: np.ndarray, packets: list[VoicePacket], sent: dict[tuple[int, int], SentFrame], origin: float,
) -> tuple[list[Run], list[str]]:
    """Find every run of ``packets`` in ``wav``; return the runs and what is wrong (empty: all there).

    ``origin`` is the sink's ``started_at``. A run that decodes to pure
    silence cannot be located; it is kept unplaced (``position`` None).
    """
    runs = _runs(packets)
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
            problems.append(f"{run.label}: not found sample-exact within {SEARCH} samples of {expected}")
        assert chosen is not None
        steps.extend(chosen)
        steps.extend((lambda d, opus=p.opus: d.decode(opus)) for p in run.packets)
        previous[run.ssrc] = run.packets[-1]
    return runs, problems
