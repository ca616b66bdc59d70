"""The download page's multitrack player in a real headless Chromium: Space plays
every track together, a click on the timeline seeks them all, mute, solo and
volume reach the <audio> elements, notes are on the timeline, and the page fits
a phone. Screenshots (desktop and phone) go to test-output/ for people to look at."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.storage import AsyncRecordingStore, Note, Recording, RecordingStore, speaker_filename
from bot.web import WebServer, create_app
from tests.bot.chromium import OUTPUT, open_chromium
from tests.bot.conftest import serving
from tests.bot.wavgen import bursts, write_wav

#: Names with emoji and CJK (the screenshot shows whether the fonts draw them), 60 s each:
#: long enough that no step of the test meets the end.
SPEAKERS = ((7001, "Ana 🎧", 440.0), (7002, "Bo 🐸 Ñandú", 660.0), (7003, "Zoë 日本", 880.0))
SECONDS = 60.0
NOTES = (Note(4.0, "Intro ends 🎬", 7001, "Ana 🎧"), Note(32.5, "Q&A <starts>", 7003, "Zoë 日本"))
#: How far apart the tracks may be read in one script call while playing (the player
#: nudges a track back once it is 10 ms off; reading the elements one after another takes a little too).
IN_STEP = 0.15


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Recording]]:
    """A finished 20 s recording of three tones with two notes, behind a real download server."""
    store = RecordingStore(tmp_path_factory.mktemp("player") / "recordings", retention_days=30)
    rec = store.create(1, "Guild", 77, "podcast")
    for index, (uid, name, freq) in enumerate(SPEAKERS):
        write_wav(rec.directory / f"{uid}.wav", bursts(freq, SECONDS, [(index * 5.0, index * 5.0 + 4.0)]))
        store.note_speaker(rec.id, uid, name)
    for note in NOTES:
        assert store.add_note(rec.id, note, limit=10)
    store.finish(rec.id, store.new_manifest(rec))
    try:
        with serving(WebServer(create_app(AsyncRecordingStore(store)), "127.0.0.1", 0)) as server:
            yield f"http://127.0.0.1:{server.port}/r/{rec.id}?key={rec.secret}", store.get(rec.id)
    finally:
        store.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = open_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Re-evaluate ``check`` until it returns something truthy; fail saying `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting until {what}; last: {result!r}"
        time.sleep(0.05)


def _state(browser: Any) -> dict[str, Any]:
    return browser.execute_script("return window.recordingPlayer.snapshot()")


def _state_when(browser: Any, condition: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The player's first state that meets `condition`."""
    def check() -> dict[str, Any] | None:
        state = _state(browser)
        return state if condition(state) else None
    return _until(check, what)


def _times(state: dict[str, Any]) -> list[float]:
    return [t["currentTime"] for t in state["tracks"]]


def _press_space(browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    ActionChains(browser).send_keys(Keys.SPACE).perform()


def _click(browser: Any, selector: str, index: int = 0) -> None:
    from selenium.webdriver.common.by import By
    browser.find_elements(By.CSS_SELECTOR, selector)[index].click()


def _click_timeline_at(browser: Any, fraction: float) -> None:
    """A real mouse click on the timeline's time axis, `fraction` of the way along it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    svg = browser.find_element(By.ID, "timeline")
    box = browser.execute_script(
        "const s = arguments[0], r = s.getBoundingClientRect();"
        "return [r.width, r.height, Number(s.dataset.left), Number(s.dataset.width)]", svg)
    width, height, left, axis = box
    x = (left + fraction * (axis - left)) / axis * width
    # Offsets are from the element's centre; click on the first speaker's row.
    ActionChains(browser).move_to_element_with_offset(svg, round(x - width / 2), round(-height / 2 + 10)).click().perform()


def _audible(state: dict[str, Any]) -> list[bool]:
    return [not t["elementMuted"] for t in state["tracks"]]


def test_player_plays_seeks_mutes_solos_in_chromium(served: tuple[str, Recording], browser: Any) -> None:
    url, _rec = served
    browser.get(url)
    _until(lambda: browser.execute_script(
        "return !!window.recordingPlayer && [...document.querySelectorAll('audio')].every(a => a.readyState >= 1)"),
        "the player is up and every track's metadata is loaded")
    state = _state(browser)
    assert [t["file"] for t in state["tracks"]] == [speaker_filename(name, uid) for uid, name, _ in SPEAKERS]
    assert state["playing"] is False and abs(state["duration"] - SECONDS) < 0.05
    notes = browser.execute_script(
        "return [...document.querySelectorAll('#timeline g.note')].map(g => Number(g.dataset.at))")
    assert notes == [n.at for n in NOTES]
    assert browser.execute_script("return document.querySelectorAll('#notes li').length") == len(NOTES)

    # Space plays every track, together, and they advance.
    _press_space(browser)
    first = _state_when(browser, lambda s: s["playing"] and min(_times(s)) > 0.5,
                        "Space started all tracks and they passed 0.5 s")
    assert not any(t["elementPaused"] for t in first["tracks"]), first
    assert max(_times(first)) - min(_times(first)) < IN_STEP, _times(first)
    later = _state_when(browser, lambda s: min(_times(s)) > max(_times(first)) + 0.5, "the tracks kept advancing")
    assert max(_times(later)) - min(_times(later)) < IN_STEP, _times(later)

    # A click on the timeline at 60 % moves every track there, and they play on in step.
    _click_timeline_at(browser, 0.6)
    target = 0.6 * SECONDS
    seeked = _state_when(browser, lambda s: all(target - 0.3 < t < target + 2.0 for t in _times(s)),
                         f"every track jumped to about {target} s")
    assert seeked["playing"] and max(_times(seeked)) - min(_times(seeked)) < IN_STEP, _times(seeked)
    _state_when(browser, lambda s: min(_times(s)) > max(_times(seeked)) + 0.3, "the tracks play on after the seek")

    # Mute, solo and volume act on the <audio> elements themselves.
    assert _audible(_state(browser)) == [True, True, True]
    _click(browser, "button.mute", 0)
    muted = _state(browser)
    assert muted["tracks"][0]["muted"] and _audible(muted) == [False, True, True]
    _click(browser, "button.solo", 1)
    assert _audible(_state(browser)) == [False, True, False]
    OUTPUT.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(OUTPUT / "player-desktop.png"))  # playing, one muted, one soloed
    _click(browser, "button.solo", 2)  # two soloed: both heard, the muted one still not
    assert _audible(_state(browser)) == [False, True, True]
    _click(browser, "button.solo", 1)
    _click(browser, "button.solo", 2)
    _click(browser, "button.mute", 0)
    assert _audible(_state(browser)) == [True, True, True]
    browser.execute_script(
        "const v = document.querySelectorAll('input.volume')[2]; v.value = '0.3';"
        "v.dispatchEvent(new Event('input', {bubbles: true}))")
    volumes = [t["elementVolume"] for t in _state(browser)["tracks"]]
    assert volumes[:2] == [1, 1] and abs(volumes[2] - 0.3) < 1e-6, volumes


    # Space again pauses all of them where they are, though a mute button has the
    # focus (clicked last): Space is the player's, the button is not pressed.
    assert browser.execute_script("return document.activeElement.className") == "mute"
    _press_space(browser)
    paused = _state_when(browser, lambda s: not s["playing"] and all(t["elementPaused"] for t in s["tracks"]),
                         "Space paused every track")
    assert paused["position"] < SECONDS - 5 and _audible(paused) == [True, True, True], paused
    time.sleep(0.3)  # a stretch of time in which paused tracks must not move
    assert _times(_state(browser)) == _times(paused)


def test_player_fits_a_phone(served: tuple[str, Recording], tmp_path: Path) -> None:
    phone = open_chromium(tmp_path / "phone-profile", window=(390, 844), phone=True)
    try:
        phone.get(served[0])
        _until(lambda: phone.execute_script("return !!window.recordingPlayer"), "the player is up")
        layout = phone.execute_script(
            "const buttons = [...document.querySelectorAll('#player button.play, td.mix button, td.mix input')];"
            "return {page: document.documentElement.scrollWidth, view: window.innerWidth,"
            " hidden: buttons.filter(b => { const r = b.getBoundingClientRect();"
            "   return r.width === 0 || r.right > window.innerWidth; }).length,"
            " timeline: document.getElementById('timeline').getBoundingClientRect().height}")
        assert layout["view"] == 390, layout
        assert layout["page"] <= layout["view"], f"the page scrolls sideways on a phone: {layout}"
        assert layout["hidden"] == 0, f"controls off screen or not drawn: {layout}"
        # Rows a finger can see (the timeline scrolls sideways in its own box rather than shrink).
        assert layout["timeline"] >= 60, layout
        OUTPUT.mkdir(exist_ok=True)
        assert phone.save_screenshot(str(OUTPUT / "player-phone.png"))
    finally:
        phone.quit()


def test_marker_files_need_the_key(served: tuple[str, Recording]) -> None:
    """labels.txt and chapters.json answer with the recording's key only; anything else
    is the same 404 as an unknown recording. The player script needs no key."""
    url, rec = served
    base = url.split("?")[0]
    root = base.rsplit("/r/", 1)[0]
    unknown = _get(f"{root}/r/zzzzzzzz/labels.txt?key={rec.secret}")
    assert unknown[0] == 404
    for name, kind in (("labels.txt", "text/plain; charset=utf-8"), ("chapters.json", "application/json+chapters")):
        status, headers, body = _get(f"{base}/{name}?key={rec.secret}")
        assert status == 200 and headers["Content-Type"] == kind and body == (rec.directory / name).read_bytes()
        for key in ("", "wrong", rec.secret[:-1], rec.secret + "x"):
            assert _get(f"{base}/{name}?key={key}")[::2] == unknown[::2], (name, key)
        assert _get(f"{base}/{name}")[::2] == unknown[::2], name
    status, headers, body = _get(f"{root}/player.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"recordingPlayer" in body


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
