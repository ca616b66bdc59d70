"""The object store tests run against moto's S3 server on loopback (tests/s3server.py)."""

from tests.s3server import s3_server, s3_settings

__all__ = ["s3_server", "s3_settings"]
