"""Which libsndfile the downloads are encoded with.

The soundfile wheel bundles a libsndfile (1.2.2) with LAME and libopus built
in statically and without their SIMD code paths: MP3 and Opus encode about 4x
slower with it than with the distribution's libsndfile, which links Debian's
libmp3lame and libopus (measured on the same audio in CPU seconds: MP3 2.6 s
against 0.6 s, Opus 2.3 s against 0.6 s; FLAC the same). So when the system
has a libsndfile that can write MP3 and Ogg Opus (1.1 or later, built with
them, as Debian 12's ``libsndfile1``), soundfile is made to load that one,
through the fallback soundfile itself has for when its bundled copy is
absent. Otherwise the bundled one serves, only slower.

This must run before anything imports soundfile: :mod:`bot.web` calls it first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["prefer_system_libsndfile"]

_log = logging.getLogger(__name__)

_MPEG_LAYER_III = 0x230000 | 0x0082  # SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III
_OGG_OPUS = 0x200000 | 0x0064  # SF_FORMAT_OGG | SF_FORMAT_OPUS


class _Info(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int), ("channels", ctypes.c_int),
                ("format", ctypes.c_int), ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


def _writes(lib: ctypes.CDLL, fmt: int) -> bool:
    info = _Info(0, 48000, 1, fmt, 0, 0)
    return bool(lib.sf_format_check(ctypes.byref(info)))


def prefer_system_libsndfile() -> str | None:
    """Have soundfile load the system's libsndfile when it writes MP3 and Ogg
    Opus; returns its version string, or None when the bundled one stays."""
    if "soundfile" in sys.modules:
        return None  # too late: it has loaded its library already
    name = ctypes.util.find_library("sndfile")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.sf_version_string.restype = ctypes.c_char_p
    version = lib.sf_version_string().decode("ascii", "replace")
    if not (_writes(lib, _MPEG_LAYER_III) and _writes(lib, _OGG_OPUS)):
        _log.info("the system's %s writes no MP3 or Ogg Opus; the one soundfile bundles is used", version)
        return None
    # soundfile loads its bundled copy from the _soundfile_data package, and the
    # system's library when that import fails: make it fail.
    sys.modules.setdefault("_soundfile_data", None)  # type: ignore[arg-type]
    return version
