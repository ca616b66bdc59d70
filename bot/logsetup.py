"""Logging for the bot process: text lines, or one JSON object per line
(``LOG_FORMAT=json``, for log collectors); either way the token and download keys
never reach a log, and text from outside cannot forge a line."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

__all__ = ["JsonLines", "RedactSecrets", "configure_logging", "printable"]

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


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message`` and, when the record carries one, ``exception`` (the
    traceback's text). JSON escapes every newline, so no text can start a line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO, *, secrets: list[str] | None = None,
                      json_lines: bool = False) -> None:
    """Log to stderr, as timestamped text or as :class:`JsonLines`, redacting `secrets` from every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets or []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python's warnings would print text lines of their own between the JSON ones.
    logging.captureWarnings(json_lines)
