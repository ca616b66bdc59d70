#!/usr/bin/env bash
# Installs the Debian packages the bot needs in production, only when one is missing,
# so repeated `make` runs cost nothing. libopus0: Opus decode/encode through ctypes.
# libsndfile1: encodes downloads (FLAC, Ogg Opus, MP3) with Debian's LAME and libopus,
# about 4x faster than the copy bundled in the soundfile wheel (see bot/web/sndlib.py).
# Extra package names given as arguments are installed the same way
# (tests/system-packages.sh passes what the tests and the demo need).
set -euo pipefail
packages=(libopus0 libsndfile1 "$@")
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them yourself)" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
