"""A real headless Chromium for the download page's tests (Debian's chromium and
chromium-driver, driven by selenium; nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Where screenshots go for people to look at (git-ignored).
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def open_chromium(profile: Path, window: tuple[int, int] = (1280, 900), *, phone: bool = False) -> Any:
    """A headless Chromium with its own profile directory, at ``window`` size (CSS pixels);
    ``phone`` emulates a touch screen of that size at twice the pixel density."""
    # `make test` installs these (tests/system-packages.sh): missing means a broken setup, not a skip.
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: run ./tests/system-packages.sh (Debian chromium, chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if phone:
        # A headless window is never narrower than 500 px; emulation is, as a phone is.
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": window[0], "height": window[1], "pixelRatio": 2.0, "touch": True}})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver
