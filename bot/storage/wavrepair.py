"""Header repair for WAV files left behind by a crash.

The recording engine (``sinks.wavfile``) owns the real repair; this module calls
it when it is installed and otherwise fixes the two size fields a crash leaves
stale (RIFF size, ``data`` size) from the file's real length, dropping a
trailing partial sample frame.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

__all__ = ["repair_directory", "repair_wav"]

_log = logging.getLogger(__name__)


def repair_wav(path: Path) -> bool:
    """Make ``path``'s header match its length; True when something changed.

    Raises ValueError when the file is not a RIFF/WAVE file with ``fmt `` before
    ``data`` (nothing to repair from).
    """
    try:
        from sinks.wavfile import repair_wav as engine_repair
    except ImportError:
        return _repair_sizes(path)
    return bool(engine_repair(path))


def repair_directory(directory: Path) -> list[Path]:
    """Repair every ``*.wav`` in ``directory``; returns the files that changed.
    Files that cannot be repaired are logged and left alone."""
    changed = []
    for path in sorted(directory.glob("*.wav")):
        try:
            if repair_wav(path):
                changed.append(path)
        except (OSError, ValueError) as exc:
            _log.warning("cannot repair %s: %s", path.name, exc)
    return changed


def _repair_sizes(path: Path) -> bool:
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError("not a RIFF/WAVE file")
        block_align = 0
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"fmt ":
                block_align = struct.unpack("<H", f.read(14)[12:14])[0]
            elif chunk_id == b"data":
                if not block_align:
                    raise ValueError("no fmt chunk before the data chunk")
                available = size - offset - 8
                data_size = available - available % block_align
                riff_size = offset + data_size
                if riff_size > 0xFFFFFFFF:
                    raise ValueError("too long for a plain WAV header")
                if data_size == chunk_size and struct.unpack("<I", head[4:8])[0] == riff_size:
                    return False
                f.seek(4)
                f.write(struct.pack("<I", riff_size))
                f.seek(offset + 4)
                f.write(struct.pack("<I", data_size))
                f.truncate(offset + 8 + data_size)
                return True
            offset += 8 + chunk_size + (chunk_size & 1)
        raise ValueError("no data chunk")
