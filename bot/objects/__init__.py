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

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from bot.objects.store import ObjectInfo, ObjectRange, ObjectStore, StoredObject
    from bot.objects.upload import UploadResult, upload_recording

#: Names whose modules import boto3 (a third of a second): loaded on first use, so a
#: bot without STORAGE_URL never pays for it.
_LAZY = {
    "ObjectInfo": "bot.objects.store", "ObjectRange": "bot.objects.store", "ObjectStore": "bot.objects.store",
    "StoredObject": "bot.objects.store", "UploadResult": "bot.objects.upload",
    "upload_recording": "bot.objects.upload",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

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
