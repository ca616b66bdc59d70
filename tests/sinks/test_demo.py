"""The engine demo runs, exits 0, and writes three aligned, equally long tracks."""

from __future__ import annotations

import pathlib

import soundfile as sf

from sinks import demo
from sinks.opus import SAMPLE_RATE


def test_demo_writes_three_equal_tracks(tmp_path: pathlib.Path, capsys) -> None:
    assert demo.main(["--out", str(tmp_path)]) == 0
    infos = {p.name: sf.info(p) for p in tmp_path.glob("*.wav")}
    assert sorted(infos) == ["101.wav", "202.wav", "303.wav"]
    assert len({i.frames for i in infos.values()}) == 1
    assert all(i.frames > 10 * SAMPLE_RATE for i in infos.values())
    out = capsys.readouterr().out
    assert "dropped=0" in out and "failure=None" in out
