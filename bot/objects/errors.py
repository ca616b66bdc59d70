"""What can go wrong with the object store, as types the caller can act on.

Every ``str`` is one line for an operator's log or terminal: it names the
setting or the object, and never holds a credential.
"""

from __future__ import annotations

__all__ = [
    "BucketMissing",
    "ChecksumMismatch",
    "CredentialsRefused",
    "ObjectMissing",
    "ObjectStoreError",
    "StartCheckFailed",
    "StoreUnavailable",
    "StoreUnreachable",
    "UploadFailed",
]


class ObjectStoreError(Exception):
    """Anything the object store refused or failed at."""


class StartCheckFailed(ObjectStoreError):
    """The store cannot be used at all: the bot should not start with it."""


class StoreUnreachable(StartCheckFailed):
    """No answer from the endpoint (refused, timed out, no such host, TLS failure).
    ``reason`` says which in a few words, without the endpoint (fit for a public answer)."""

    def __init__(self, message: str, reason: str = "no connection") -> None:
        super().__init__(message)
        self.reason = reason


class CredentialsRefused(StartCheckFailed):
    """The store answered but does not accept the credentials (or there are none)."""


class BucketMissing(StartCheckFailed):
    """The store has no bucket of the configured name."""


class ObjectMissing(ObjectStoreError):
    """A read asked for an object the store does not have."""


class StoreUnavailable(ObjectStoreError):
    """The store kept failing with transient errors for a request's whole retry budget."""


class UploadFailed(ObjectStoreError):
    """An upload did not complete within its retry budget, or hit an error
    retrying cannot fix; the objects verified so far stay, and a later call resumes."""


class ChecksumMismatch(UploadFailed):
    """What the store holds, or was about to be sent, is not the local file's bytes
    as they were hashed (the file changed, or the bytes were damaged on the way)."""
