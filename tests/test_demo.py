"""The README's main command without a token: the loopback demo, run as a user would."""

import subprocess
import sys
from pathlib import Path

import soundfile


def test_demo_records_three_speakers_and_prints_the_files(tmp_path: Path) -> None:
    out = tmp_path / "recordings"
    done = subprocess.run(
        [sys.executable, "-m", "tests.demo", "--seconds", "4", "--no-serve", "--out", str(out)],
        capture_output=True, text=True, timeout=150,
    )
    log = out / "demo-bot.log"
    assert done.returncode == 0, done.stdout + done.stderr + (log.read_text() if log.exists() else "")
    assert "> /record start" in done.stdout and "> /record stop" in done.stdout
    assert "Download (page, players, ZIP, FLAC): http://127.0.0.1:" in done.stdout
    (folder,) = [p for p in out.iterdir() if (p / "manifest.json").exists()]
    wavs = sorted(folder.glob("*.wav"))
    assert wavs, done.stdout
    for wav in wavs:
        assert wav.name in done.stdout
        info = soundfile.info(str(wav))
        assert info.samplerate == 48_000 and info.channels == 1 and info.duration > 3.5
    assert "Traceback" not in log.read_text()
