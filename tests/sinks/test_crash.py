"""Crash safety: a recording process killed with SIGKILL leaves WAV files that open and hold
everything but the last second."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

from sinks import repair_wav
from sinks.opus import FRAME_SAMPLES, SAMPLE_RATE

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Two users speaking continuously in real time (this test is about wall time: the
# header refresh runs on it). Packets carry their scheduled arrival time, so
# placement does not depend on how well the child keeps its pace on a busy machine.
CHILD = """
import sys, time
import numpy as np
from sinks import AudioSink, VoicePacket
from sinks.opus import OpusEncoder

sink = AudioSink(sys.argv[1])
encoders = {1: OpusEncoder(1), 2: OpusEncoder(1)}
freqs = {1: 440.0, 2: 880.0}
n = np.arange(960)
start = time.monotonic()
k = 0
while True:
    due = start + k * 0.02
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    for user in (1, 2):
        pcm = (np.sin(2 * np.pi * freqs[user] * (n + k * 960) / 48000) * 8000).astype(np.int16)
        packet = VoicePacket(sequence=k & 0xFFFF, timestamp=(k * 960) & 0xFFFFFFFF,
                             opus=encoders[user].encode(pcm), received_at=due, ssrc=user)
        sink.write(user, packet)
    if k % 10 == 0:
        talk = {uid: user.talk_seconds for uid, user in sink.stats().per_user.items()}
        print(min(talk.values()) if len(talk) == 2 else 0.0, flush=True)
    k += 1
"""


def test_sigkill_leaves_valid_files_missing_at_most_the_last_second(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        talk = 0.0
        assert child.stdout is not None
        while talk < 3.0:
            line = child.stdout.readline()
            assert line, f"recorder child exited early with {child.poll()}"
            assert time.monotonic() < deadline, "recorder child too slow"
            talk = float(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    files = sorted(tmp_path.glob("*.wav"))
    assert [f.name for f in files] == ["1.wav", "2.wav"]
    for path in files:
        audio, rate = sf.read(path, dtype="int16")
        assert rate == SAMPLE_RATE
        # All decoded audio but the last second (plus scheduling slack on a shared machine).
        assert len(audio) >= (talk - 1.5) * SAMPLE_RATE, (path.name, len(audio) / SAMPLE_RATE, talk)
        # Continuous speech from the first sound to the end of the file: nothing missing inside.
        loud = np.flatnonzero(np.abs(audio) > 1000)
        body = audio[loud[0]:len(audio) - len(audio) % FRAME_SAMPLES]
        frame_rms = np.sqrt(np.mean(body[:len(body) - len(body) % FRAME_SAMPLES].astype(float).reshape(-1, FRAME_SAMPLES) ** 2, axis=1))
        assert frame_rms.min() > 1000, path.name
        # The bytes written after the last header refresh are there too, and repair recovers them.
        report = repair_wav(path)
        assert report.frames >= len(audio)
        assert sf.info(path).frames == report.frames
