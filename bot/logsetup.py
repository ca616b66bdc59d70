"""Logging for the bot process: one format, and the token never reaches a log."""

from __future__ import annotations

import logging
import sys

__all__ = ["RedactSecrets", "configure_logging"]

_REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replace every configured secret in a record's final text.

    Applied on the handler, so records from discord.py and aiohttp are covered
    as well as ours, whatever they interpolate.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Short strings would redact ordinary words; real tokens are long.
        self._secrets = [s for s in secrets if s and len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        if any(s in text or s in exc_text for s in self._secrets):
            for secret in self._secrets:
                text = text.replace(secret, _REDACTED)
                exc_text = exc_text.replace(secret, _REDACTED)
            record.msg, record.args = text, None
            record.exc_text = exc_text or None
        return True


def configure_logging(level: int = logging.INFO, *, secrets: list[str] | None = None) -> None:
    """Log to stderr with timestamps, redacting `secrets` from every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets or []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
