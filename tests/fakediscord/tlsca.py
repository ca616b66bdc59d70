"""A throwaway certificate authority for the loopback Discord's TLS endpoints.

discord.py always reaches the voice gateway over ``wss://``; the fake serves it
with a certificate from this CA and clients trust the CA's PEM file (written to a
private temporary directory, removed on close, never committed).
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import tempfile

import trustme

_log = logging.getLogger(__name__)


class TestCA:
    """A trustme CA with one server certificate for 127.0.0.1 and localhost."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self) -> None:
        self._ca = trustme.CA()
        self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._dir = tempfile.mkdtemp(prefix="fakediscord-ca-")
        self.ca_file: str = os.path.join(self._dir, "ca.pem")
        """Path of the CA certificate (PEM) clients must trust."""
        self._ca.cert_pem.write_to_path(self.ca_file)
        _log.debug("test CA written to %s", self.ca_file)

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a server presenting the 127.0.0.1 certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts only this CA (what a test hands to discord.py)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def close(self) -> None:
        """Delete the CA's files."""
        shutil.rmtree(self._dir, ignore_errors=True)
