"""The local side of verification: one read of a file gives its SHA-256, its
parts' digests and the checksum S3 will report, cut the way the upload cuts it."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from bot.objects.checksum import composite_checksum, fingerprint, read_parts, same_checksum

_MIB = 1 << 20


@pytest.mark.parametrize("size, part_size, parts", [
    (0, None, 1), (1, None, 1), (3 * _MIB + 7, None, 1),
    (10 * _MIB, 5 * _MIB, 2), (10 * _MIB + 1, 5 * _MIB, 3), (5 * _MIB - 1, 5 * _MIB, 1),
])
def test_fingerprint_cuts_like_the_upload(tmp_path: Path, size: int, part_size: int | None, parts: int) -> None:
    data = (bytes(range(251)) * (size // 251 + 1))[:size]  # a prime period: parts differ
    path = tmp_path / "track.wav"
    path.write_bytes(data)
    fp = fingerprint(path, part_size)
    pieces = list(read_parts(path, part_size))
    assert b"".join(pieces) == data and len(pieces) == parts
    assert fp.size == size and fp.sha256 == hashlib.sha256(data).hexdigest()
    assert fp.part_sha256 == tuple(hashlib.sha256(p).digest() for p in pieces)


def test_single_part_checksum_is_the_files_sha256(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(b"0.5\t0.5\tintro\n")
    assert fingerprint(path, None).s3_checksum == base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def test_multipart_checksum_is_composite(tmp_path: Path) -> None:
    path = tmp_path / "track.wav"
    path.write_bytes(b"a" * (5 * _MIB) + b"b" * 10)
    digests = [hashlib.sha256(b"a" * (5 * _MIB)).digest(), hashlib.sha256(b"b" * 10).digest()]
    expected = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode() + "-2"
    assert fingerprint(path, 5 * _MIB).s3_checksum == expected == composite_checksum(digests)


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"not a track")
    (tmp_path / "track.wav").symlink_to(tmp_path / "secret")
    with pytest.raises(OSError):
        fingerprint(tmp_path / "track.wav", None)


@pytest.mark.parametrize("reported, expected, same", [
    ("abc=", "abc=", True), ("abc=-3", "abc=-3", True), ("abc=", "abc=-3", True),
    ("abc=-2", "abc=-3", False), ("abd=-3", "abc=-3", False), (None, "abc=", False), ("abc=-3", "abc=", False),
])
def test_same_checksum_allows_a_missing_part_count(reported: str | None, expected: str, same: bool) -> None:
    assert same_checksum(reported, expected) is same
