"""Finished recordings in an S3-compatible object store (AWS S3, MinIO, Garage,
Ceph, R2, B2): settings, the store client, and the upload of one recording.

Imports nothing of Discord or of the recording engine; the web layer streams
objects to downloads (:mod:`bot.web.objects`). Every call blocks: run it in a
thread from the event loop. Typical use::

    settings = StorageSettings.parse(env["STORAGE_URL"], env.get("STORAGE_ENDPOINT"), env.get("STORAGE_REGION"))
    store = ObjectStore(settings)
    store.check()                      # StartCheckFailed: one line for the operator
    result = upload_recording(recording.directory, store, recording.id)   # UploadFailed: try again later
    ...                                # only now may the local folder go
    store.delete_prefix(result.prefix)  # retention
"""

from bot.objects.checksum import Fingerprint, fingerprint
from bot.objects.errors import (
    BucketMissing,
    ChecksumMismatch,
    CredentialsRefused,
    ObjectMissing,
    ObjectStoreError,
    StartCheckFailed,
    StoreUnavailable,
    StoreUnreachable,
    UploadFailed,
)
from bot.objects.retry import RetryPolicy
from bot.objects.settings import StorageSettingError, StorageSettings
from bot.objects.store import ObjectInfo, ObjectRange, ObjectStore, StoredObject
from bot.objects.upload import UploadResult, upload_recording

__all__ = [
    "BucketMissing",
    "ChecksumMismatch",
    "CredentialsRefused",
    "Fingerprint",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectRange",
    "ObjectStore",
    "ObjectStoreError",
    "RetryPolicy",
    "StartCheckFailed",
    "StorageSettingError",
    "StorageSettings",
    "StoreUnavailable",
    "StoreUnreachable",
    "StoredObject",
    "UploadFailed",
    "UploadResult",
    "fingerprint",
    "upload_recording",
]
