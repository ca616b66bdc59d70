"""What a ``/record note`` may say, and how many a recording may have.

A note becomes a line of an Audacity label track and a podcast chapter title
(:mod:`bot.storage.markers`), so it is kept to one line of plain text.
"""

from __future__ import annotations

import unicodedata

__all__ = ["NOTE_MAX_CHARS", "NOTES_PER_RECORDING", "NoteRefused", "clean_note"]

#: Long enough for a chapter title or a sentence about what happens; short enough for a label.
NOTE_MAX_CHARS = 200
#: Notes one recording keeps at most: the manifest, label track and chapters stay small
#: enough to be written on the room a recording keeps for closing on a full disk.
NOTES_PER_RECORDING = 100


class NoteRefused(ValueError):
    """A note that cannot be kept; its message is the one line the member is told."""


def clean_note(text: str) -> str:
    """``text`` as one line: control characters dropped, runs of whitespace made one space.

    Raises:
        NoteRefused: nothing is left, or more than :data:`NOTE_MAX_CHARS` characters are.
    """
    printable = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    line = " ".join(printable.split())
    if not line:
        raise NoteRefused("A note needs some text: `/record note text:what happens now`.")
    if len(line) > NOTE_MAX_CHARS:
        raise NoteRefused(f"A note may be at most {NOTE_MAX_CHARS} characters long; this one has {len(line)}.")
    return line
