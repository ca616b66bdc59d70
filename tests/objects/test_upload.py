"""Uploading a whole finished recording: every file verified, the manifest
last, resumable after the network died mid-way, and a damaged object in the
store found and replaced. The network failure is real: a TCP relay in front of
moto's server that drops every connection (tests/tcprelay.py)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.objects import ObjectStore, RetryPolicy, StorageSettings, UploadFailed, upload_recording
from bot.objects.upload import ACTIVITY_NAME
from bot.storage import MANIFEST_NAME, Manifest
from bot.web.activity import ACTIVITY_NAME as WEB_ACTIVITY_NAME
from tests.objects.recordings import finished_recording
from tests.s3server import S3Server
from tests.tcprelay import Relay

_MIB = 1 << 20


def _objects(server: S3Server, settings: StorageSettings) -> dict[str, bytes]:
    admin = server.client()
    listed = admin.list_objects_v2(Bucket=settings.bucket, Prefix=settings.prefix).get("Contents", [])
    return {o["Key"][len(settings.prefix):]: admin.get_object(Bucket=settings.bucket, Key=o["Key"])["Body"].read()
            for o in listed}


def _local(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {f"rec1/{n}": (folder / n).read_bytes() for n in names}


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, Manifest]:
    """Two speakers: a short track (one request) and a long one (three 5 MiB parts)."""
    folder = tmp_path / "rec1"
    return folder, finished_recording(folder, {"alice": 20.0, "bob": 130.0})


def _store(settings: StorageSettings, **kwargs: object) -> ObjectStore:
    return ObjectStore(settings, multipart_threshold=5 * _MIB, part_size=5 * _MIB, **kwargs)  # type: ignore[arg-type]


def test_the_activity_cache_name_is_the_web_layers() -> None:
    assert ACTIVITY_NAME == WEB_ACTIVITY_NAME


def test_a_recording_goes_up_whole_and_verified(s3_settings: StorageSettings, s3_server: S3Server,
                                                recording: tuple[Path, Manifest]) -> None:
    folder, manifest = recording
    (folder / ACTIVITY_NAME).write_text("{}", encoding="utf-8")
    (folder / "bob-1001.flac").write_bytes(b"an encoded copy: made again on demand, not uploaded")
    result = upload_recording(folder, _store(s3_settings), "rec1")
    tracks = [s.file for s in manifest.speakers]
    names = [*tracks, "labels.txt", "chapters.json", ACTIVITY_NAME, MANIFEST_NAME]
    assert [o.name for o in result.objects] == [f"rec1/{n}" for n in names]  # the manifest last
    assert all(o.uploaded for o in result.objects) and result.missing == ()
    assert result.bytes_sent == sum((folder / n).stat().st_size for n in names)
    for obj in result.objects:
        assert obj.sha256 == hashlib.sha256((folder / obj.name.removeprefix("rec1/")).read_bytes()).hexdigest()
    assert _objects(s3_server, s3_settings) == _local(folder, names)
    assert all((folder / n).exists() for n in names)  # the local copy is the caller's to delete


def test_a_second_upload_sends_nothing(s3_settings: StorageSettings, recording: tuple[Path, Manifest]) -> None:
    folder, _manifest = recording
    store = _store(s3_settings)
    upload_recording(folder, store, "rec1")
    again = upload_recording(folder, store, "rec1")
    assert again.bytes_sent == 0 and not any(o.uploaded for o in again.objects)


def test_a_running_recording_is_not_uploaded(s3_settings: StorageSettings, recording: tuple[Path, Manifest]) -> None:
    folder, manifest = recording
    manifest.status = "recording"
    manifest.write(folder)
    with pytest.raises(UploadFailed, match="still running"):
        upload_recording(folder, _store(s3_settings), "rec1")


def test_a_lost_track_is_reported_and_the_rest_uploaded(s3_settings: StorageSettings,
                                                        recording: tuple[Path, Manifest]) -> None:
    folder, manifest = recording
    (folder / manifest.speakers[0].file).unlink()
    result = upload_recording(folder, _store(s3_settings), "rec1")
    assert result.missing == (manifest.speakers[0].file,)
    assert f"rec1/{manifest.speakers[1].file}" in [o.name for o in result.objects]


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[Relay]:
    relay = Relay(urlsplit(s3_server.endpoint).port or 0)
    yield relay
    relay.close()


def test_upload_resumes_after_the_network_died_midway(s3_settings: StorageSettings, s3_server: S3Server,
                                                      recording: tuple[Path, Manifest], relay: Relay) -> None:
    folder, manifest = recording
    alice, bob = (folder / s.file for s in manifest.speakers)
    through_relay = StorageSettings(s3_settings.bucket, s3_settings.prefix, f"http://127.0.0.1:{relay.port}",
                                    s3_settings.region)
    store = _store(through_relay, retry=RetryPolicy(budget=2.0, first_delay=0.1, max_delay=0.5))
    # Alice's track (1.8 MiB) gets through; the network dies in the first of Bob's parts.
    relay.cut_after(alice.stat().st_size + 2 * _MIB)
    with pytest.raises(UploadFailed) as caught:
        upload_recording(folder, store, "rec1")
    assert relay.down
    assert str(caught.value).startswith(f"recording upload rec1/: upload rec1/{bob.name} part 1: the object store "
                                        "kept failing")
    assert "\n" not in str(caught.value)
    stored = _objects(s3_server, s3_settings)
    assert stored == {f"rec1/{alice.name}": alice.read_bytes()}  # verified; nothing half-made, no manifest
    admin = s3_server.client()
    assert len(admin.list_multipart_uploads(Bucket=s3_settings.bucket).get("Uploads", [])) == 1  # abort failed too

    relay.restore()
    before = relay.forwarded
    result = upload_recording(folder, store, "rec1")
    sent = {o.name: o.uploaded for o in result.objects}
    assert sent[f"rec1/{alice.name}"] is False and sent[f"rec1/{bob.name}"] is True
    assert result.bytes_sent == sum(o.size for o in result.objects) - alice.stat().st_size
    # Alice's bytes did not cross the network again: only Bob's and the small files did (plus HTTP).
    assert relay.forwarded - before < result.bytes_sent + 256 * 1024
    names = [s.file for s in manifest.speakers] + ["labels.txt", "chapters.json", MANIFEST_NAME]
    assert _objects(s3_server, s3_settings) == _local(folder, names)
    assert admin.list_multipart_uploads(Bucket=s3_settings.bucket).get("Uploads", []) == []


def test_a_damaged_object_in_the_store_is_replaced(s3_settings: StorageSettings, s3_server: S3Server,
                                                   recording: tuple[Path, Manifest]) -> None:
    folder, manifest = recording
    store = _store(s3_settings)
    upload_recording(folder, store, "rec1")
    alice = folder / manifest.speakers[0].file
    damaged = bytearray(alice.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one bit-flipped byte, the size unchanged
    s3_server.client().put_object(Bucket=s3_settings.bucket, Key=f"{s3_settings.prefix}rec1/{alice.name}",
                                  Body=bytes(damaged), ChecksumAlgorithm="SHA256")
    info = store.stat(f"rec1/{alice.name}")
    assert info is not None and info.size == alice.stat().st_size
    result = upload_recording(folder, store, "rec1")
    assert [o.name for o in result.objects if o.uploaded] == [f"rec1/{alice.name}"]
    assert _objects(s3_server, s3_settings)[f"rec1/{alice.name}"] == alice.read_bytes()


def test_an_outage_shorter_than_the_budget_is_ridden_out(s3_settings: StorageSettings, s3_server: S3Server,
                                                         recording: tuple[Path, Manifest], relay: Relay) -> None:
    folder, manifest = recording
    through_relay = StorageSettings(s3_settings.bucket, s3_settings.prefix, f"http://127.0.0.1:{relay.port}",
                                    s3_settings.region)
    store = _store(through_relay, retry=RetryPolicy(budget=60.0, first_delay=0.05, max_delay=0.2))
    relay.cut_after(3 * _MIB)  # in the middle of Bob's first part
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(upload_recording(folder, store, "rec1")))
    worker.start()
    deadline = time.monotonic() + 60
    while relay.refused < 3:  # the upload keeps trying while the network is down
        assert worker.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.02)
    relay.restore()
    worker.join(60)
    assert not worker.is_alive() and len(outcome) == 1
    names = [s.file for s in manifest.speakers] + ["labels.txt", "chapters.json", MANIFEST_NAME]
    assert _objects(s3_server, s3_settings) == _local(folder, names)
