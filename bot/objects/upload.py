"""Uploading a finished recording's folder to the object store, resumably.

Every file of the recording goes up under ``<prefix>/``: the tracks the
manifest lists, the notes (``labels.txt``, ``chapters.json``), the web page's
activity cache, and ``manifest.json`` last, so that a manifest in the store
means everything before it is there. A file whose object is already in the
store with the same size and SHA-256 checksum is skipped, so a call after a
failure resumes where the last one stopped. Nothing local is ever deleted here:
the caller decides that after a successful :func:`upload_recording`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from pathlib import Path

from bot.objects.checksum import fingerprint, same_checksum
from bot.objects.errors import ChecksumMismatch, ObjectStoreError, UploadFailed
from bot.objects.store import ObjectInfo, ObjectStore, StoredObject
from bot.storage import MANIFEST_NAME, MARKER_FILES, Manifest, ManifestError

__all__ = ["ACTIVITY_NAME", "UploadResult", "recording_files", "upload_recording"]

_log = logging.getLogger(__name__)

#: The download page's activity cache (bot.web.activity writes it; the web layer
#: sits above this one, so the name is repeated here and a test keeps them equal).
ACTIVITY_NAME = "activity.json"


@dataclasses.dataclass(frozen=True, slots=True)
class UploadResult:
    """A recording safely in the store: every object verified, in upload order.
    ``missing`` names tracks the manifest lists that the folder does not hold
    (a speaker whose file was lost): they are in neither place."""

    prefix: str
    objects: tuple[StoredObject, ...]
    missing: tuple[str, ...]

    @property
    def bytes_sent(self) -> int:
        """Bytes uploaded by this call (objects already in the store not counted)."""
        return sum(o.size for o in self.objects if o.uploaded)


def _regular(folder: Path, name: str) -> bool:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return False
    try:
        return stat.S_ISREG(os.lstat(folder / name).st_mode)
    except OSError:
        return False


def recording_files(folder: Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """The recording's files in upload order (``manifest.json`` last), and the
    tracks the manifest lists that are not regular files in ``folder``."""
    tracks = [s.file for s in manifest.speakers]
    present = [t for t in tracks if _regular(folder, t)]
    missing = [t for t in tracks if t not in present]
    extras = [n for n in (*MARKER_FILES, ACTIVITY_NAME) if _regular(folder, n)]
    return [*present, *extras, MANIFEST_NAME], missing


def _matches(info: ObjectInfo | None, size: int, s3_checksum: str) -> bool:
    return info is not None and info.size == size and same_checksum(info.s3_checksum, s3_checksum)


def upload_recording(folder: Path, store: ObjectStore, prefix: str) -> UploadResult:
    """Upload every file of the finished recording in ``folder`` under ``prefix``
    (a name such as the recording's id) and verify each against the store's
    checksum; blocks, so run it in a thread. Files already stored and verified
    are skipped. Raises :class:`UploadFailed` (:class:`ChecksumMismatch` when a
    file changed or arrived damaged) naming the file; what was verified before
    stays in the store for the next call."""
    prefix = prefix.strip("/") + "/"
    what = f"recording upload {prefix}"
    try:
        manifest = Manifest.read(folder)
    except (ManifestError, OSError) as exc:
        raise UploadFailed(f"{what}: no readable manifest ({type(exc).__name__})") from None
    if manifest.status == "recording":
        raise UploadFailed(f"{what}: the recording is still running")
    names, missing = recording_files(folder, manifest)
    try:
        if dropped := store.abort_unfinished(prefix):
            _log.info("%s: dropped %d unfinished multipart upload(s) of an earlier try", what, dropped)
    except ObjectStoreError as exc:
        raise UploadFailed(f"{what}: {exc}") from exc
    if missing:
        _log.warning("%s: %d track(s) the manifest lists are not in the folder", what, len(missing))
    stored: list[StoredObject] = []
    for name in names:
        path = folder / name
        try:
            expected = fingerprint(path, store.part_size_for(path.stat().st_size))
            key = prefix + name
            existing = store.stat(key)
            if _matches(existing, expected.size, expected.s3_checksum):
                stored.append(StoredObject(key, expected.size, expected.sha256, expected.s3_checksum, uploaded=False))
                continue
            if existing is not None:
                _log.warning("%s: the stored %s is not the file (%d bytes there, %d here); uploading it again",
                             what, name, existing.size, expected.size)
            stored.append(store.upload(path, key, expected))
        except ChecksumMismatch:
            raise
        except ObjectStoreError as exc:
            raise UploadFailed(f"{what}: {exc}") from exc
        except OSError as exc:
            raise UploadFailed(f"{what}: cannot read {name} ({exc.strerror or type(exc).__name__})") from None
    result = UploadResult(prefix, tuple(stored), tuple(missing))
    _log.info("%s: %d files verified in the store, %d bytes sent", what, len(stored), result.bytes_sent)
    return result
