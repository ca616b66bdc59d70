"""What a file's upload must match: size, SHA-256, and the checksum the
object store reports for the object, computed here before anything is sent.

S3's flexible checksums give a single-part object the SHA-256 of its bytes and
a multipart object a *composite* one: the SHA-256 of the parts' SHA-256
digests, followed by ``-`` and the number of parts. The store computes it from
the bytes it received, so comparing it with :attr:`Fingerprint.s3_checksum`,
made from the local file, proves the object is the file.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["READ_CHUNK", "Fingerprint", "composite_checksum", "fingerprint", "open_regular", "read_parts",
           "same_checksum"]

#: Bytes read at once while hashing or uploading.
READ_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Fingerprint:
    """A local file as it is to be stored.

    ``part_size`` is None for a single-part upload; ``part_sha256`` holds each
    part's raw digest (one entry for a single part); ``sha256`` is the whole
    file's, in hex.
    """

    size: int
    sha256: str
    part_size: int | None
    part_sha256: tuple[bytes, ...]

    @property
    def s3_checksum(self) -> str:
        """The ``x-amz-checksum-sha256`` the store reports for this file's object."""
        if self.part_size is None:
            return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")
        return composite_checksum(self.part_sha256)


def composite_checksum(part_digests: tuple[bytes, ...] | list[bytes]) -> str:
    """S3's composite SHA-256 of a multipart object: base64 of the SHA-256 of the
    parts' concatenated digests, then ``-<parts>``."""
    combined = hashlib.sha256(b"".join(part_digests)).digest()
    return f"{base64.b64encode(combined).decode('ascii')}-{len(part_digests)}"


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, refusing a symlink at its last step: a link
    planted in a recording's folder must not send another file to the store."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def same_checksum(reported: str | None, expected: str) -> bool:
    """Whether the store's checksum of an object is ``expected``. Some stores
    leave the ``-<parts>`` off a composite checksum in HEAD answers (moto does;
    AWS adds it), so the digest must be equal and a part count, when given, too."""
    if reported is None:
        return False
    digest, _, parts = reported.strip().partition("-")
    want_digest, _, want_parts = expected.partition("-")
    return digest == want_digest and parts in ("", want_parts)


def read_parts(path: Path, part_size: int | None) -> Iterator[bytes]:
    """The file's bytes cut into parts of ``part_size`` (the last may be shorter),
    or as one part when ``part_size`` is None. An empty file is one empty part."""
    with open_regular(path) as file:
        first = True
        while True:
            part = file.read(part_size if part_size is not None else -1)
            if not part and not first:
                return
            first = False
            yield part
            if part_size is None or len(part) < part_size:
                return


def fingerprint(path: Path, part_size: int | None) -> Fingerprint:
    """Hash the file in one pass, whole and per part (parts of ``part_size``, or one)."""
    whole = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    with open_regular(path) as file:
        while True:
            part = hashlib.sha256()
            taken = 0
            while part_size is None or taken < part_size:
                chunk = file.read(READ_CHUNK if part_size is None else min(READ_CHUNK, part_size - taken))
                if not chunk:
                    break
                whole.update(chunk)
                part.update(chunk)
                taken += len(chunk)
            if taken or not parts:
                parts.append(part.digest())
                size += taken
            if part_size is None or taken < part_size:
                break
    return Fingerprint(size, whole.hexdigest(), part_size, tuple(parts))
