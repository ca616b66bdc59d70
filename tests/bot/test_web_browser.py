"""The download page in a real headless Chromium (:mod:`tests.bot.chromium`).
A screenshot goes to test-output/ for people to look at."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.bot.chromium import OUTPUT, open_chromium
from tests.bot.conftest import SPEAKERS, Site


@pytest.fixture
def browser(tmp_path: Path):
    driver = open_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def _poll(check, timeout: float = 60.0):
    """Re-evaluate ``check`` until it returns something truthy or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_page_in_chromium(site: Site, browser) -> None:
    browser.get(site.url(f"/r/{site.rec.id}"))
    assert site.rec.id in browser.title

    names = browser.execute_script(
        "return [...document.querySelectorAll('tr.speaker td.name')].map(td => td.textContent)"
    )
    assert sorted(names) == sorted(name for _, name, *_ in SPEAKERS)
    # The hostile display name stayed text: no script ran, no element was made from it
    # (the one script is the player's own, from the server).
    assert browser.execute_script("return document.querySelectorAll('script:not(#player-script), b, i').length") == 0
    assert browser.execute_script("return !!window.recordingPlayer"), "the player script did not run under the CSP"

    states = _poll(lambda: (s := browser.execute_script(
        "return [...document.querySelectorAll('audio')].map(a => [a.readyState, a.duration, a.error && a.error.code])"
    )) and all(ready >= 1 for ready, _, _ in s) and s)
    assert states, "the players never loaded their metadata"
    durations = sorted(round(duration, 2) for _, duration, _ in states)
    assert durations == sorted(round(seconds, 2) for *_, seconds, _ in SPEAKERS)
    assert all(error is None for _, _, error in states)

    timeline = browser.execute_script(
        "const svg = document.getElementById('timeline'); if (!svg) return null;"
        "const box = svg.getBoundingClientRect();"
        "return [box.width, box.height, svg.querySelectorAll('rect.talk').length]"
    )
    assert timeline is not None, "no timeline picture on the page"
    width, height, bars = timeline
    assert width > 300 and height > 50 and bars == sum(len(spans) for *_, spans in SPEAKERS)

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "download-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
