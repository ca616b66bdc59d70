"""A real S3-protocol server on loopback for tests: moto's standalone server
(``python -m moto.server``) as a subprocess, with authentication switched on so
that a wrong secret or an unknown access key is refused as AWS would.

Fixtures (import them into a ``conftest.py`` to use them):

* ``s3_server`` (session): the running server, its endpoint and the one
  access key it accepts;
* ``s3_settings``: a fresh bucket for the test, the credentials put in the
  environment (the standard AWS chain reads them from there, as in production),
  and the :class:`~bot.objects.StorageSettings` naming it.

End-to-end tests hand :meth:`S3Server.env` and ``STORAGE_URL``/``STORAGE_ENDPOINT``
to the bot process instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bot.objects import StorageSettings

__all__ = ["REGION", "S3Server", "s3_server", "s3_settings", "start_s3_server"]

REGION = "us-east-1"
#: Seconds the server may take to answer after it is started (imports are slow on a busy machine).
START_TIMEOUT = 60.0


@dataclasses.dataclass
class S3Server:
    """A running moto server that accepts exactly one access key."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """The environment that gives a process these credentials through the AWS chain
        (and keeps it from looking anywhere else, such as an instance metadata service)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of this server with the accepted key, for a test's own setup and checks."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                             aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                             config=Config(s3={"addressing_style": "path"}))

    def stop(self) -> None:
        """End the server."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _enable_authentication(endpoint: str) -> tuple[str, str]:
    """Make a user allowed everything, then have the server check every request's
    signature from now on; the user's access key and secret."""
    bootstrap = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                             aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    bootstrap.create_user(UserName="recorder")
    bootstrap.put_user_policy(UserName="recorder", PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = bootstrap.create_access_key(UserName="recorder")["AccessKey"]
    # moto counts requests before enforcing authentication; 0 enforces it from the next one.
    # (as text/plain: a form body would be parsed away before moto reads it)
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10):
        pass
    return key["AccessKeyId"], key["SecretAccessKey"]


def start_s3_server(log_path: Path) -> S3Server:
    """Start moto's server on a free loopback port, wait until it answers, and
    switch authentication on. Its output goes to ``log_path``."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(endpoint):
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"moto server did not answer within {START_TIMEOUT:.0f} s; see {log_path}")
        time.sleep(0.1)
    try:
        access_key, secret_key = _enable_authentication(endpoint)
    except BaseException:
        process.kill()
        raise
    return S3Server(endpoint, access_key, secret_key, process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on loopback, for the whole session."""
    server = start_s3_server(tmp_path_factory.mktemp("s3server") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_settings(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[StorageSettings]:
    """A fresh, empty bucket; the credentials in this process's environment."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"rec-{uuid.uuid4().hex[:16]}"
    admin = s3_server.client()
    admin.create_bucket(Bucket=bucket)
    yield StorageSettings(bucket, "recordings/", s3_server.endpoint, REGION)
    with contextlib.suppress(Exception):  # the next test has its own bucket anyway
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                admin.delete_object(Bucket=bucket, Key=obj["Key"])
        admin.delete_bucket(Bucket=bucket)
