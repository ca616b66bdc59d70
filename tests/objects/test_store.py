"""The object store client against moto's S3 server on loopback: the start
check's one-line errors, multipart uploads read back byte for byte, ranged
reads, checksums that catch a changed file, listing and deleting."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from bot.objects import (
    BucketMissing,
    ChecksumMismatch,
    CredentialsRefused,
    ObjectMissing,
    ObjectStore,
    StorageSettings,
    StoreUnreachable,
    fingerprint,
)
from bot.objects.checksum import same_checksum
from tests.bot.wavgen import tone, write_wav
from tests.s3server import S3Server

_MIB = 1 << 20


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_clear_line(message: str, server: S3Server) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert server.secret_key not in message and server.access_key not in message


def test_start_check_passes_with_a_good_setup(s3_settings: StorageSettings) -> None:
    ObjectStore(s3_settings).check()


def test_start_check_unreachable_endpoint(s3_settings: StorageSettings, s3_server: S3Server) -> None:
    port = _closed_port()
    settings = StorageSettings(s3_settings.bucket, "", f"http://127.0.0.1:{port}", s3_settings.region)
    with pytest.raises(StoreUnreachable) as caught:
        ObjectStore(settings).check()
    assert str(caught.value) == (f"STORAGE_ENDPOINT http://127.0.0.1:{port}: cannot reach the object store "
                                 "(connection refused)")
    _one_clear_line(str(caught.value), s3_server)


def test_start_check_wrong_secret(s3_settings: StorageSettings, s3_server: S3Server,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + s3_server.secret_key)
    with pytest.raises(CredentialsRefused) as caught:
        ObjectStore(s3_settings).check()
    assert str(caught.value) == (f"STORAGE_URL s3://{s3_settings.bucket}/recordings/: the object store refused "
                                 "the credentials (SignatureDoesNotMatch)")
    _one_clear_line(str(caught.value), s3_server)
    assert "not-" not in str(caught.value)


def test_start_check_unknown_access_key(s3_settings: StorageSettings, s3_server: S3Server,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(CredentialsRefused) as caught:
        ObjectStore(s3_settings).check()
    assert str(caught.value).endswith("the object store refused the credentials (InvalidAccessKeyId)")
    _one_clear_line(str(caught.value), s3_server)


def test_start_check_no_credentials(s3_settings: StorageSettings, s3_server: S3Server,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsRefused) as caught:
        ObjectStore(s3_settings).check()
    assert str(caught.value).startswith(f"STORAGE_URL {s3_settings.url}: no AWS credentials found")
    _one_clear_line(str(caught.value), s3_server)


def test_start_check_missing_bucket(s3_settings: StorageSettings, s3_server: S3Server) -> None:
    settings = StorageSettings("no-such-bucket-here", "x/", s3_settings.endpoint, s3_settings.region)
    with pytest.raises(BucketMissing) as caught:
        ObjectStore(settings).check()
    assert str(caught.value) == ("STORAGE_URL s3://no-such-bucket-here/x/: the object store has no bucket named "
                                 "'no-such-bucket-here'")
    _one_clear_line(str(caught.value), s3_server)


@pytest.fixture
def long_track(tmp_path: Path) -> Path:
    """A real WAV of 2 minutes 10 s: 11.9 MiB, three 5 MiB parts."""
    return write_wav(tmp_path / "alice-1000.wav", tone(440.0, 130.0, amplitude=0.4))


def test_multipart_upload_reads_back_byte_identical(s3_settings: StorageSettings, s3_server: S3Server,
                                                    long_track: Path) -> None:
    store = ObjectStore(s3_settings, multipart_threshold=5 * _MIB, part_size=5 * _MIB)
    size = long_track.stat().st_size
    assert store.part_size_for(size) == 5 * _MIB
    expected = fingerprint(long_track, store.part_size_for(size))
    stored = store.upload(long_track, "rec1/alice-1000.wav", expected)
    assert (stored.size, stored.sha256, stored.uploaded) == (size, hashlib.sha256(long_track.read_bytes()).hexdigest(),
                                                             True)
    assert stored.s3_checksum.endswith("-3")  # the store's own composite checksum of three parts
    info = store.stat("rec1/alice-1000.wav")
    assert info is not None and (info.size, info.sha256) == (size, stored.sha256)
    assert same_checksum(info.s3_checksum, stored.s3_checksum)  # moto's HEAD leaves off the "-3"
    # Read back through the store and, independently, with the server's own client.
    whole = store.open_range("rec1/alice-1000.wav", 0, size - 1)
    assert whole.size == size and whole.read() == long_track.read_bytes()
    raw = s3_server.client().get_object(Bucket=s3_settings.bucket, Key="recordings/rec1/alice-1000.wav")
    assert raw["Body"].read() == long_track.read_bytes()


def test_small_file_is_one_request_and_verified(s3_settings: StorageSettings, tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("1.000000\t1.000000\tintro\n", encoding="utf-8")
    store = ObjectStore(s3_settings)
    stored = store.upload(path, "rec1/labels.txt", fingerprint(path, store.part_size_for(path.stat().st_size)))
    assert "-" not in stored.s3_checksum
    assert store.open_range("rec1/labels.txt", 0, stored.size - 1).read() == path.read_bytes()


def test_ranged_reads_give_exact_bytes_and_the_size(s3_settings: StorageSettings, long_track: Path) -> None:
    store = ObjectStore(s3_settings, multipart_threshold=5 * _MIB, part_size=5 * _MIB)
    data = long_track.read_bytes()
    size = len(data)
    store.upload(long_track, "t.wav", fingerprint(long_track, 5 * _MIB))
    for first, last in [(0, 0), (size - 1, size - 1), (0, 43), (5 * _MIB - 2, 5 * _MIB + 1), (1000, size - 1)]:
        got = store.open_range("t.wav", first, last)
        assert (got.size, got.first, got.last) == (size, first, last)
        assert got.read() == data[first:last + 1], (first, last)


def test_reading_a_missing_or_replaced_object(s3_settings: StorageSettings, tmp_path: Path) -> None:
    store = ObjectStore(s3_settings)
    with pytest.raises(ObjectMissing):
        store.open_range("nothing.wav", 0, 0)
    assert store.stat("nothing.wav") is None
    path = tmp_path / "a.txt"
    path.write_bytes(b"first version")
    store.upload(path, "a.txt", fingerprint(path, None))
    old_etag = store.stat("a.txt").etag
    path.write_bytes(b"second version")
    store.upload(path, "a.txt", fingerprint(path, None))
    with pytest.raises(ObjectMissing):
        store.open_range("a.txt", 0, 3, if_match=old_etag)


@pytest.mark.parametrize("multipart", [False, True])
def test_a_file_changed_after_hashing_is_caught_and_not_stored(
        s3_settings: StorageSettings, s3_server: S3Server, long_track: Path, multipart: bool) -> None:
    store = ObjectStore(s3_settings, multipart_threshold=5 * _MIB if multipart else 64 * _MIB, part_size=5 * _MIB)
    expected = fingerprint(long_track, store.part_size_for(long_track.stat().st_size))
    with long_track.open("r+b") as f:  # one sample changes in the third part, the size stays
        f.seek(11 * _MIB)
        f.write(b"\x7f\x7f")
    with pytest.raises(ChecksumMismatch) as caught:
        store.upload(long_track, "changed.wav", expected)
    assert "changed since it was hashed" in str(caught.value)
    assert store.stat("changed.wav") is None
    unfinished = s3_server.client().list_multipart_uploads(Bucket=s3_settings.bucket).get("Uploads", [])
    assert unfinished == []


def test_list_and_delete_a_recordings_objects(s3_settings: StorageSettings, tmp_path: Path) -> None:
    store = ObjectStore(s3_settings)
    path = tmp_path / "x.txt"
    path.write_bytes(b"x")
    for name in ("rec1/a.wav", "rec1/manifest.json", "rec10/a.wav", "rec2/a.wav"):
        store.upload(path, name, fingerprint(path, None))
    assert [o.name for o in store.list("rec1/")] == ["rec1/a.wav", "rec1/manifest.json"]
    assert store.delete_prefix("rec1/") == 2
    assert [o.name for o in store.list()] == ["rec10/a.wav", "rec2/a.wav"]
    with pytest.raises(ValueError):
        store.delete_prefix("rec1")  # not a folder: would take rec10/ along
