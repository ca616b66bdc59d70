"""Multitrack player benchmark: how far apart the tracks play, in a real headless Chromium.

Run: ``.venv/bin/python -m tests.bench.player_bench [--tracks 6] [--seconds 10]``.
Prints a table. Not collected by pytest.

Both rows play the same page's ``<audio>`` elements. The player row starts
and seeks them through the page's player (``window.recordingPlayer``), which
keeps them in step; the baseline row does what a page without it would: call
``play()`` on each element and set each one's ``currentTime`` to seek, then
leave them alone. The spread is the largest minus the smallest
``currentTime`` of the tracks, read in one script call every 100 ms (Chromium
advances ``currentTime`` in steps of about 10 ms, so a few ms are the reading's
own granularity); once after the start and once after a seek to the middle.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.storage import AsyncRecordingStore, RecordingStore
from bot.web import WebServer, create_app
from tests.bot.chromium import open_chromium
from tests.bot.conftest import serving
from tests.bot.wavgen import bursts, write_wav

_READ = "return [...document.querySelectorAll('audio')].map(a => a.currentTime)"
_PLAIN_PLAY = "document.querySelectorAll('audio').forEach(a => { a.controls = false; a.play(); })"
_PLAIN_SEEK = "document.querySelectorAll('audio').forEach(a => { a.currentTime = arguments[0]; })"


def _spreads(browser: Any, seconds: float, after: float) -> list[float]:
    """Spreads (ms) read every 100 ms for `seconds`, once every track is past `after` s."""
    found: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        times = browser.execute_script(_READ)
        if min(times) > after:
            found.append((max(times) - min(times)) * 1000)
        time.sleep(0.1)
    return found


def _summary(spreads: list[float]) -> str:
    ordered = sorted(spreads)
    if not ordered:
        return "no readings | | "
    return (f"{ordered[len(ordered) // 2]:.1f} | {ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]:.1f} | "
            f"{ordered[-1]:.1f}")


def _run(url: str, profile: Path, use_player: bool, seconds: float, middle: float) -> tuple[list[float], list[float]]:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    browser = open_chromium(profile)
    try:
        browser.get(url)
        deadline = time.monotonic() + 60
        while not browser.execute_script(
                "return !!window.recordingPlayer && [...document.querySelectorAll('audio')].every(a => a.readyState >= 1)"):
            assert time.monotonic() < deadline, "the page did not load"
            time.sleep(0.05)
        if use_player:
            ActionChains(browser).send_keys(Keys.SPACE).perform()
        else:
            # A user gesture first, so autoplay lets the plain elements start too.
            ActionChains(browser).send_keys(Keys.TAB).perform()
            browser.execute_script(_PLAIN_PLAY)
        started = _spreads(browser, seconds, 0.3)
        if use_player:
            browser.execute_script("window.recordingPlayer.seek(arguments[0])", middle)
        else:
            browser.execute_script(_PLAIN_SEEK, middle)
        seeked = _spreads(browser, seconds, middle + 0.3)
        return started, seeked
    finally:
        browser.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="reading time after start and after the seek")
    args = parser.parse_args()
    length = 4 * args.seconds + 10
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = RecordingStore(root / "recordings", retention_days=30)
        rec = store.create(1, "Bench", 7, "vc")
        for index in range(args.tracks):
            uid = 9001 + index
            write_wav(rec.directory / f"{uid}.wav", bursts(300.0 + 80 * index, length, [(index, index + 2.0)]))
            store.note_speaker(rec.id, uid, f"speaker {index}")
        store.finish(rec.id, store.new_manifest(rec))
        try:
            with serving(WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)) as server:
                url = f"http://127.0.0.1:{server.port}/r/{rec.id}?key={rec.secret}"
                rows = [(name, _run(url, root / name, use, args.seconds, length / 2))
                        for name, use in (("player", True), ("baseline", False))]
        finally:
            store.close()
    print(f"{args.tracks} tracks of {length:g} s, spread of currentTime between tracks (ms), "
          f"read every 100 ms for {args.seconds:g} s")
    print("| | after start: median | p95 | max | after a seek: median | p95 | max |")
    print("|---|---|---|---|---|---|---|")
    for name, (started, seeked) in rows:
        print(f"| {name} | {_summary(started)} | {_summary(seeked)} |")


if __name__ == "__main__":
    main()
