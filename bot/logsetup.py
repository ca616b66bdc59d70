"""Logging for the bot process: one format; the token and download keys never reach
a log, and text from outside cannot forge a line."""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["RedactSecrets", "configure_logging", "printable"]

_REDACTED = "[redacted]"
#: A download key in a link (``?key=...``), wherever a record quotes one: discord.py
#: logs message payloads at DEBUG, and the stop summary carries the link.
_KEY_IN_LINK = re.compile(r"(key=)[A-Za-z0-9_-]{8,}")


def printable(text: str) -> str:
    """``text`` from outside (a request path, a name) safe to log: every character that
    is not printable (newlines, terminal escapes) written as its escape sequence, so it
    can neither start a fake log line nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class RedactSecrets(logging.Filter):
    """Replace every configured secret, and every download key in a link, in a record's final text.

    Applied on the handler, so records from discord.py and aiohttp are covered
    as well as ours, whatever they interpolate.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Short strings would redact ordinary words; real tokens are long.
        self._secrets = [s for s in secrets if s and len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        redacted, redacted_exc = self._redact(text), self._redact(exc_text)
        if redacted != text or redacted_exc != exc_text:
            record.msg, record.args = redacted, None
            record.exc_text = redacted_exc or None
        return True

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return _KEY_IN_LINK.sub(rf"\1{_REDACTED}", text)


def configure_logging(level: int = logging.INFO, *, secrets: list[str] | None = None) -> None:
    """Log to stderr with timestamps, redacting `secrets` from every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets or []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
