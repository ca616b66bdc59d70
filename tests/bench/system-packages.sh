#!/usr/bin/env bash
# Debian packages only the benchmarks need (not `make test`):
# ffmpeg: the baseline `python -m tests.bench encode` measures our encoders against.
set -euo pipefail
exec "$(dirname "$0")/../../deploy/system-packages.sh" ffmpeg
