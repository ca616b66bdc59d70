#!/usr/bin/env bash
# The Debian packages for development and tests, on top of what production needs
# (deploy/system-packages.sh installs both, each only when missing).
# chromium, chromium-driver: the download page's test in a real headless browser.
# fonts-noto-color-emoji, fonts-noto-cjk: that browser draws emoji and CJK in
# names and notes (the screenshots people look at), not empty boxes.
# postgresql: the real server the index's PostgreSQL tests start (tests/postgres.py).
set -euo pipefail
exec "$(dirname "$0")/../deploy/system-packages.sh" chromium chromium-driver fonts-noto-color-emoji fonts-noto-cjk postgresql
