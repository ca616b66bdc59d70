"""Recording ids users can type, and download secrets nobody can guess."""

from __future__ import annotations

import re
import secrets

__all__ = ["RECORDING_ID_LENGTH", "is_recording_id", "new_recording_id", "new_secret", "normalize_recording_id"]

# No 0/o, 1/l/i: ids are read aloud and typed into `/recordings get <id>`.
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
RECORDING_ID_LENGTH = 8
_ID_RE = re.compile(f"[{_ALPHABET}]{{{RECORDING_ID_LENGTH}}}\\Z")


def new_recording_id() -> str:
    """Return a fresh random id: 8 characters, about 40 bits. Uniqueness is the
    index's job (it retries on a clash); secrecy is the download key's."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(RECORDING_ID_LENGTH))


def normalize_recording_id(text: str) -> str:
    """Return ``text`` as a user would mean it: trimmed and lower-cased."""
    return text.strip().lower()


def is_recording_id(text: str) -> bool:
    """True when ``text`` has the exact shape of a recording id (so it is safe in paths)."""
    return bool(_ID_RE.match(text))


def new_secret() -> str:
    """Return a download key of 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)
