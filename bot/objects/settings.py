"""Where recordings go when they are kept in an S3-compatible object store.

``STORAGE_URL=s3://bucket/prefix`` names the bucket and an optional key prefix;
``STORAGE_ENDPOINT`` an S3-compatible server other than AWS (MinIO, Garage,
Ceph, R2, B2) as an http(s) URL; ``STORAGE_REGION`` the region to sign for.
Credentials never appear here: boto3 finds them through the standard AWS chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, shared config files,
instance roles). A bad value raises :class:`StorageSettingError`, whose ``str``
is one line naming the setting and never repeats anything that may hold a secret.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

__all__ = ["StorageSettingError", "StorageSettings", "parse_endpoint", "parse_region", "parse_storage_url"]

# AWS's rule for bucket names (MinIO, Garage, R2 and B2 follow it).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z", re.ASCII)
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z", re.ASCII)
# Key characters that survive every S3 implementation unescaped.
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()-]+\Z", re.ASCII)


class StorageSettingError(ValueError):
    """A malformed storage setting; ``str(error)`` is one line fit for operators."""


@dataclasses.dataclass(frozen=True, slots=True)
class StorageSettings:
    """The object store to keep recordings in.

    ``prefix`` is empty or ends with ``/``; every key the store writes starts
    with it. ``endpoint`` is None for AWS itself, ``region`` None to let the
    AWS chain (``AWS_REGION``, the config file) decide.
    """

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` as an operator would write it (no secret is ever part of it)."""
        return f"s3://{self.bucket}/{self.prefix}"

    @classmethod
    def parse(cls, storage_url: str, endpoint: str | None = None, region: str | None = None) -> StorageSettings:
        """The settings from their environment values (an empty endpoint or region counts as unset)."""
        bucket, prefix = parse_storage_url(storage_url)
        return cls(bucket, prefix, parse_endpoint(endpoint) if endpoint else None,
                   parse_region(region) if region else None)


def _has_userinfo(netloc: str) -> bool:
    return "@" in netloc


def parse_storage_url(text: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``; ``s3://bucket`` -> ``("bucket", "")``."""
    parts = urlsplit(text.strip())
    if _has_userinfo(parts.netloc):
        # The value may be an access key and a secret: never echo it.
        raise StorageSettingError("STORAGE_URL: credentials do not belong in the URL; "
                                  "give them through the AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)")
    if parts.scheme.lower() != "s3":
        raise StorageSettingError(f"STORAGE_URL: expected s3://bucket/prefix, got {text!r}")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise StorageSettingError(f"STORAGE_URL: expected s3://bucket/prefix without ? or #, got {text!r}")
    if not _BUCKET.match(parts.netloc) or ".." in parts.netloc:
        raise StorageSettingError(f"STORAGE_URL: {parts.netloc!r} is not a bucket name "
                                  "(3 to 63 lowercase letters, digits, dots and hyphens)")
    segments = [s for s in parts.path.split("/") if s]
    bad = next((s for s in segments if s in (".", "..") or not _PREFIX_SEGMENT.match(s)), None)
    if bad is not None:
        raise StorageSettingError(f"STORAGE_URL: the prefix part {bad!r} is not a plain key name "
                                  "(letters, digits and !_.*'()- only)")
    return parts.netloc, "".join(s + "/" for s in segments)


def parse_endpoint(text: str) -> str:
    """An S3-compatible server's base URL, ``http(s)://host[:port]``, as given (trailing ``/`` dropped)."""
    parts = urlsplit(text.strip())
    if _has_userinfo(parts.netloc):
        raise StorageSettingError("STORAGE_ENDPOINT: credentials do not belong in the URL; "
                                  "give them through the AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise StorageSettingError(f"STORAGE_ENDPOINT: expected an http or https URL, got {text!r}")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise StorageSettingError(f"STORAGE_ENDPOINT: bad port in {text!r}") from None
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise StorageSettingError(f"STORAGE_ENDPOINT: expected only scheme, host and port, got {text!r}")
    return f"{parts.scheme.lower()}://{parts.netloc}"


def parse_region(text: str) -> str:
    """A region name such as ``eu-central-1`` (or ``auto`` for R2)."""
    region = text.strip()
    if not _REGION.match(region):
        raise StorageSettingError(f"STORAGE_REGION: expected a region name such as eu-central-1, got {text!r}")
    return region
