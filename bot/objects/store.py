"""One bucket of an S3-compatible object store (and a key prefix in it), through boto3.

Every method blocks: callers on the event loop run them in a thread, as they
do the recording index. Names given to the methods are relative to the
configured prefix (``STORAGE_URL=s3://bucket/prefix``); :meth:`ObjectStore.key`
gives the full key. Transient failures are retried under the store's
:class:`~bot.objects.retry.RetryPolicy`; what is left surfaces as one of the
types of :mod:`bot.objects.errors`, whose messages hold no credential.

Uploads are verified with S3's flexible checksums (SHA-256): each request
carries the SHA-256 of its bytes, and afterwards the store's own checksum of
the object must equal the one computed from the local file
(:attr:`~bot.objects.checksum.Fingerprint.s3_checksum`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Generator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from bot.objects.checksum import Fingerprint, open_regular, read_parts, same_checksum
from bot.objects.errors import (
    BucketMissing,
    ChecksumMismatch,
    CredentialsRefused,
    ObjectMissing,
    ObjectStoreError,
    StartCheckFailed,
    StoreUnreachable,
)
from bot.objects.retry import RetryPolicy, describe, retrying
from bot.objects.settings import StorageSettings

__all__ = [
    "DEFAULT_MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "ObjectInfo",
    "ObjectRange",
    "ObjectStore",
    "StoredObject",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_MIB = 1 << 20
#: Files larger than this go up in parts (a track grows by 345 MB an hour).
DEFAULT_MULTIPART_THRESHOLD = 16 * _MIB
#: The size of each part; raised for files so large that they would need more than S3's 10,000 parts.
DEFAULT_PART_SIZE = 16 * _MIB
_MAX_PARTS = 10_000
#: Bytes handed on at once while reading an object.
_READ_CHUNK = 256 * 1024
#: At most this many keys per DeleteObjects request (S3's limit).
_DELETE_BATCH = 1000
# Answers that mean the credentials themselves are wrong or not allowed here.
_CREDENTIAL_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
    "InvalidClientTokenId", "AllAccessDisabled", "AccountProblem",
})
# Answers that mean the bucket lives in another region than the one signed for.
_REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"})


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object as the store describes it. ``sha256`` (hex, of the whole file)
    is what our upload recorded in the object's metadata; ``s3_checksum`` is the
    store's own SHA-256 checksum (composite ``...-N`` for a multipart object);
    both are None where the store gave none (listings never do)."""

    name: str
    size: int
    etag: str
    last_modified: datetime
    sha256: str | None = None
    s3_checksum: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredObject:
    """A file that is safely in the store: its object's checksum was checked
    against the file's. ``uploaded`` is False when it was there already."""

    name: str
    size: int
    sha256: str
    s3_checksum: str
    uploaded: bool


class ObjectRange:
    """Bytes ``first`` to ``last`` (inclusive) of an object of ``size`` bytes,
    being read: :meth:`chunks` yields them in order; :meth:`close` ends the
    read early (reading to the end closes it too)."""

    __slots__ = ("_body", "first", "last", "name", "size")

    def __init__(self, name: str, first: int, last: int, size: int, body: Any) -> None:
        self.name = name
        self.first = first
        self.last = last
        self.size = size
        self._body = body

    def chunks(self) -> Generator[bytes, None, None]:
        """The bytes, a chunk at a time; :class:`ObjectStoreError` when the connection breaks."""
        try:
            while chunk := self._body.read(_READ_CHUNK):
                yield chunk
        except (BotoCoreError, OSError) as exc:
            raise ObjectStoreError(f"read {self.name}: the connection broke ({type(exc).__name__})") from None
        finally:
            self._body.close()

    def read(self) -> bytes:
        """All the bytes at once (for small ranges)."""
        return b"".join(self.chunks())

    def close(self) -> None:
        """Stop reading and let the connection go."""
        self._body.close()


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or _status(exc))


def _connection_reason(exc: BotoCoreError) -> str:
    """What kept the connection from being made, in words (the URL left out)."""
    if isinstance(exc, SSLError):
        return "TLS failed"
    if isinstance(exc, ConnectTimeoutError):
        return "timed out connecting"
    if isinstance(exc, ReadTimeoutError):
        return "no answer in time"
    cause = str(getattr(exc, "kwargs", {}).get("error", exc))
    for needle, reason in (("refused", "connection refused"), ("resolution", "no such host"),
                           ("not known", "no such host"), ("unreachable", "network unreachable"),
                           # The peer closing the connection, or resetting it, before it answered.
                           ("closed", "connection closed"), ("reset", "connection closed")):
        if needle in cause.lower():
            return reason
    return "no connection"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class ObjectStore:
    """The bucket and prefix of ``settings``; credentials from the standard AWS chain.

    Files above ``multipart_threshold`` bytes are uploaded in parts of
    ``part_size`` bytes (at least 5 MiB, S3's smallest part but the last).
    """

    def __init__(self, settings: StorageSettings, *, retry: RetryPolicy | None = None,
                 multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD, part_size: int = DEFAULT_PART_SIZE) -> None:
        if part_size < 5 * _MIB:
            raise ValueError(f"part_size {part_size} is below S3's 5 MiB minimum")
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._config = Config(
            # RetryPolicy is the one retry layer: botocore's would repeat each of its attempts.
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # Self-hosted stores (MinIO, Garage, Ceph) seldom have a DNS name per bucket.
            s3={"addressing_style": "path"} if settings.endpoint else None,
        )
        self._session = boto3.session.Session(region_name=settings.region)
        self._client = self._session.client("s3", endpoint_url=settings.endpoint, config=self._config)
        self._bucket = settings.bucket
        #: Clients with shorter timeouts for health checks, by timeout; made on first use.
        self._quick_clients: dict[float, Any] = {}
        self._quick_lock = threading.Lock()

    # -- names -------------------------------------------------------------

    def key(self, name: str) -> str:
        """The full key of ``name`` (a relative, slash-separated name)."""
        segments = name.split("/")
        if any(s in ("", ".", "..") for s in segments):
            raise ValueError(f"not a relative object name: {name!r}")
        return self.settings.prefix + name

    def _name(self, key: str) -> str:
        return key[len(self.settings.prefix):]

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """``operation()`` with retries; a 404, or a 412 to an If-Match (the object
        was replaced), becomes :class:`ObjectMissing`, any other failure an
        :class:`ObjectStoreError` naming ``what``."""
        try:
            return retrying(operation, what, self.retry)
        except ClientError as exc:
            if _status(exc) in (404, 412):
                raise ObjectMissing(f"{what}: no such object ({_code(exc)})") from None
            raise ObjectStoreError(f"{what}: the object store answered {_code(exc)}") from None
        except BotoCoreError as exc:
            raise ObjectStoreError(f"{what}: {describe(exc)}") from None

    # -- start check -------------------------------------------------------

    def _client_with_timeout(self, timeout: float) -> Any:
        """A client like the store's own whose connects and answers each wait at most ``timeout`` seconds."""
        with self._quick_lock:
            client = self._quick_clients.get(timeout)
            if client is None:
                config = self._config.merge(Config(connect_timeout=timeout, read_timeout=timeout))
                client = self._session.client("s3", endpoint_url=self.settings.endpoint, config=config)
                self._quick_clients[timeout] = client
            return client

    def check(self, *, timeout: float | None = None) -> None:
        """Fail with one clear line, at once and without retrying, unless the
        endpoint answers, accepts the credentials and has the bucket. With
        ``timeout`` (a health check), connecting and the answer each get at most
        that many seconds instead of the client's own limits."""
        url = self.settings.url
        where = f"STORAGE_ENDPOINT {self.settings.endpoint}" if self.settings.endpoint else f"STORAGE_URL {url}"
        client = self._client if timeout is None else self._client_with_timeout(timeout)
        try:
            client.list_objects_v2(Bucket=self._bucket, Prefix=self.settings.prefix, MaxKeys=1)
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError):
            raise CredentialsRefused(f"STORAGE_URL {url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                                     "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the machine a role)") from None
        except (BotoConnectionError, HTTPClientError) as exc:
            reason = _connection_reason(exc)
            raise StoreUnreachable(f"{where}: cannot reach the object store ({reason})", reason) from None
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise BucketMissing(f"STORAGE_URL {url}: the object store has no bucket named "
                                    f"{self._bucket!r}") from None
            if code in _CREDENTIAL_CODES or _status(exc) in (401, 403):
                raise CredentialsRefused(f"STORAGE_URL {url}: the object store refused the credentials "
                                         f"({code})") from None
            if code in _REGION_CODES or _status(exc) == 301:
                raise StartCheckFailed(f"STORAGE_REGION: the bucket {self._bucket!r} is in another region "
                                       f"({code})") from None
            raise StartCheckFailed(f"STORAGE_URL {url}: the object store answered {code}") from None
        except BotoCoreError as exc:
            raise StartCheckFailed(f"STORAGE_URL {url}: {describe(exc)}") from None

    # -- reading -----------------------------------------------------------

    def stat(self, name: str) -> ObjectInfo | None:
        """The object's size, ETag, time and checksums, or None when there is none."""
        key = self.key(name)
        try:
            head = self._call(f"stat {name}", lambda: self._client.head_object(
                Bucket=self._bucket, Key=key, ChecksumMode="ENABLED"))
        except ObjectMissing:
            return None
        return ObjectInfo(name, int(head["ContentLength"]), head["ETag"].strip('"'), head["LastModified"],
                          head.get("Metadata", {}).get("sha256"), head.get("ChecksumSHA256"))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in key order."""
        found: list[ObjectInfo] = []
        token: dict[str, Any] = {}
        while True:
            page = self._call(f"list {prefix or '/'}", lambda: self._client.list_objects_v2(
                Bucket=self._bucket, Prefix=self.settings.prefix + prefix, **token))
            found += [ObjectInfo(self._name(o["Key"]), int(o["Size"]), o["ETag"].strip('"'), o["LastModified"])
                      for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def open_range(self, name: str, first: int, last: int, *, if_match: str | None = None) -> ObjectRange:
        """Start reading bytes ``first``..``last`` (inclusive, ``last`` < size) of
        the object. With ``if_match`` (an ETag) a replaced object is
        :class:`ObjectMissing` rather than other bytes."""
        if not 0 <= first <= last:
            raise ValueError(f"not a byte range: {first}-{last}")
        key = self.key(name)
        conditions = {"IfMatch": f'"{if_match}"'} if if_match else {}
        answer = self._call(f"read {name}", lambda: self._client.get_object(
            Bucket=self._bucket, Key=key, Range=f"bytes={first}-{last}", **conditions))
        body = answer["Body"]
        # "bytes first-last/size": the range the store sends and the object's whole size.
        sent, _, size = str(answer.get("ContentRange", "")).removeprefix("bytes ").partition("/")
        if sent != f"{first}-{last}" or not size.isdigit():
            body.close()
            raise ObjectStoreError(f"read {name}: asked for bytes {first}-{last}, the store sent {sent or 'all'}")
        return ObjectRange(name, first, last, int(size), body)

    # -- writing -----------------------------------------------------------

    def part_size_for(self, size: int) -> int | None:
        """The part size a file of ``size`` bytes is uploaded with, or None for one request."""
        if size <= self.multipart_threshold:
            return None
        smallest = -(-size // _MAX_PARTS)
        return max(self.part_size, -(-smallest // _MIB) * _MIB)

    def upload(self, path: Path, name: str, expected: Fingerprint) -> StoredObject:
        """Upload the file at ``path`` as ``name`` and check the store's checksum of
        the object against ``expected`` (the file's :func:`~bot.objects.checksum.fingerprint`,
        whose ``part_size`` decides single or multipart). :class:`ChecksumMismatch`
        when the file no longer matches ``expected`` (nothing is then completed)
        or the store holds other bytes; OSError when the file cannot be read."""
        if expected.part_size is None:
            self._put_whole(path, name, expected)
        else:
            self._put_parts(path, name, expected)
        stored = self.stat(name)
        if stored is None or stored.size != expected.size or not same_checksum(stored.s3_checksum,
                                                                                 expected.s3_checksum):
            reported = "no object" if stored is None else f"{stored.size} bytes, SHA-256 {stored.s3_checksum}"
            raise ChecksumMismatch(f"upload {name}: the store reports {reported}; the file is {expected.size} bytes, "
                                   f"SHA-256 {expected.s3_checksum}")
        return StoredObject(name, expected.size, expected.sha256, expected.s3_checksum, uploaded=True)

    @staticmethod
    def _checked_part(name: str, number: int, data: bytes, expected: Fingerprint) -> str:
        """The part's SHA-256 (base64), after checking it is the part that was hashed."""
        digest = hashlib.sha256(data).digest()
        if number > len(expected.part_sha256) or digest != expected.part_sha256[number - 1]:
            raise ChecksumMismatch(f"upload {name}: the file changed since it was hashed (part {number})")
        return _b64(digest)

    def _put_whole(self, path: Path, name: str, expected: Fingerprint) -> None:
        with open_regular(path) as file:
            data = file.read()
        checksum = self._checked_part(name, 1, data, expected)
        key = self.key(name)
        self._call(f"upload {name}", lambda: self._client.put_object(
            Bucket=self._bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
            Metadata={"sha256": expected.sha256}))

    def _put_parts(self, path: Path, name: str, expected: Fingerprint) -> None:
        key = self.key(name)
        created = self._call(f"upload {name}", lambda: self._client.create_multipart_upload(
            Bucket=self._bucket, Key=key, ChecksumAlgorithm="SHA256", Metadata={"sha256": expected.sha256}))
        upload_id = created["UploadId"]
        try:
            parts = []
            for number, data in enumerate(read_parts(path, expected.part_size), start=1):
                checksum = self._checked_part(name, number, data, expected)
                answer = self._call(f"upload {name} part {number}", lambda: self._client.upload_part(
                    Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
                    ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum))
                parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum})
            if len(parts) != len(expected.part_sha256):
                raise ChecksumMismatch(f"upload {name}: the file changed since it was hashed "
                                       f"({len(parts)} parts, not {len(expected.part_sha256)})")
            self._call(f"upload {name}", lambda: self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            self._abort(name, key, upload_id)
            raise

    def _abort(self, name: str, key: str, upload_id: str) -> None:
        """Drop an unfinished multipart upload's parts, once (the bucket's lifecycle
        rule for incomplete uploads is the backstop when the store is down)."""
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError) as exc:
            _log.warning("upload %s: its unfinished parts stay in the store (%s)", name, describe(exc))

    def abort_unfinished(self, prefix: str) -> int:
        """Drop the parts of multipart uploads under ``prefix`` that were never
        completed (an upload cut off earlier); how many there were."""
        answer = self._call(f"list unfinished uploads {prefix}", lambda: self._client.list_multipart_uploads(
            Bucket=self._bucket, Prefix=self.settings.prefix + prefix))
        unfinished = answer.get("Uploads", [])
        for upload in unfinished:
            self._call(f"abort {self._name(upload['Key'])}", lambda: self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]))
        return len(unfinished)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (a folder name ending in ``/``); the count deleted."""
        if not prefix.endswith("/"):
            raise ValueError(f"not a folder prefix: {prefix!r}")
        self.key(prefix + "x")  # the same rules as an object name
        names = [o.name for o in self.list(prefix)]
        for start in range(0, len(names), _DELETE_BATCH):
            batch = [{"Key": self.key(n)} for n in names[start:start + _DELETE_BATCH]]
            answer = self._call(f"delete {prefix}", lambda: self._client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}))
            if errors := answer.get("Errors"):
                raise ObjectStoreError(f"delete {prefix}: {len(errors)} objects not deleted "
                                       f"({errors[0].get('Code', 'error')})")
        return len(names)
