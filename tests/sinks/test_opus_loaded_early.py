"""libopus is loaded where the worker pool is built, never at a recording's first decode.

Finding the library runs ``ldconfig`` and makes temporary files. Done lazily in
the worker, a process short of descriptors when somebody first speaks failed
that decode and stopped the recording ("No usable temporary directory"); CI
caught it when a test lowered the bot's descriptor limit right after a track
was opened.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys

from sinks import VoicePacket

from .streams import encode, tone

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The child builds the engine, then leaves itself room for the one WAV file its
# one speaker needs and nothing more, and only then does the speaker start.
CHILD = """
import os, pickle, resource, sys
from sinks import AudioSink, WorkerPool

packets = pickle.load(open(sys.argv[2], "rb"))
pool = WorkerPool(1)
sink = AudioSink(sys.argv[1], pool=pool)
free = os.open(os.devnull, os.O_RDONLY)  # the lowest free descriptor: the WAV file's
os.close(free)
resource.setrlimit(resource.RLIMIT_NOFILE, (free + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
for packet in packets:
    sink.write(1, packet)
sink.close()
pool.close()
stats = sink.stats()
print(stats.decoded, stats.failure)
"""


def test_a_recording_short_of_descriptors_still_decodes(tmp_path: pathlib.Path) -> None:
    frames = encode(tone(440.0, 50))
    packets = [VoicePacket(sequence=k, timestamp=k * 960, opus=opus, received_at=1000.0 + k * 0.02, ssrc=1)
               for k, opus in enumerate(frames)]
    stream = tmp_path / "packets.pickle"
    stream.write_bytes(pickle.dumps(packets))
    out = tmp_path / "recording"
    out.mkdir()
    child = subprocess.run([sys.executable, "-c", CHILD, str(out), str(stream)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert child.returncode == 0, child.stderr
    decoded, failure = child.stdout.split(maxsplit=1)
    assert failure.strip() == "None", failure
    assert int(decoded) == len(frames)
