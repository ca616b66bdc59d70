"""A recording's notes as files other tools read: an Audacity label track and
podcast chapters, written next to the tracks when the recording closes.

- ``labels.txt``: Audacity's label format, one label per line, tab-separated
  start, end and text in seconds (a point label has end = start). File >
  Import > Labels puts it beside the tracks, which start at the same sample 0.
- ``chapters.json``: the Podcasting 2.0 JSON chapters format (``version``
  1.2.0, ``chapters`` of ``startTime`` and ``title``), the file a feed's
  ``<podcast:chapters type="application/json+chapters">`` points at.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from bot.storage.manifest import Note

__all__ = ["CHAPTERS_NAME", "LABELS_NAME", "MARKER_FILES", "chapters_json", "labels_text", "write_markers"]

_log = logging.getLogger(__name__)

LABELS_NAME = "labels.txt"
CHAPTERS_NAME = "chapters.json"
#: Every marker file a recording with notes has, in the order downloads list them.
MARKER_FILES = (LABELS_NAME, CHAPTERS_NAME)
_CHAPTERS_VERSION = "1.2.0"


def _one_line(text: str) -> str:
    # A tab or line break inside a label would start a new field or label.
    return " ".join(text.split())


def labels_text(notes: list[Note]) -> str:
    """The Audacity label track of ``notes`` (point labels, microsecond precision as Audacity writes)."""
    return "".join(f"{n.at:.6f}\t{n.at:.6f}\t{_one_line(n.text)}\n" for n in notes)


def chapters_json(notes: list[Note]) -> str:
    """The podcast chapters of ``notes``: one chapter starts at each note, titled by it."""
    chapters = [{"startTime": round(n.at, 3), "title": _one_line(n.text)} for n in sorted(notes, key=lambda n: n.at)]
    return json.dumps({"version": _CHAPTERS_VERSION, "chapters": chapters}, ensure_ascii=False, indent=2) + "\n"


def write_markers(directory: Path, notes: list[Note]) -> list[str]:
    """Write both marker files of ``notes`` into ``directory`` (none when there are no
    notes); returns the names written. Each is renamed into place whole; one that
    cannot be written (a full disk) is logged and left out: the manifest keeps the notes."""
    if not notes:
        return []
    written = []
    for name, text in ((LABELS_NAME, labels_text(notes)), (CHAPTERS_NAME, chapters_json(notes))):
        tmp = directory / (name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, directory / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            _log.warning("%s: %s not written: %s", directory.name, name, os.strerror(exc.errno or 0))
            continue
        written.append(name)
    return written
