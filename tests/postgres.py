"""A real PostgreSQL server for the tests, started from Debian's ``postgresql``
package (tests/system-packages.sh installs it).

PostgreSQL refuses to run as root, so under root the server runs as a system
user of its own (created when missing) in a temporary directory it owns. It
listens on 127.0.0.1 at a free port (and on a socket in that directory), its
superuser ``postgres`` logs in over TCP with a password, as a deployment would.

Fixtures (tests/conftest.py makes them visible everywhere under tests/):

- ``postgres_server``: one :class:`PostgresServer` for the whole session;
- ``postgres_url``: a fresh, empty database on it for one test, as a
  ``postgresql://`` URL (dropped afterwards).

A test that stops the server (:meth:`PostgresServer.stop`) starts it again
before it ends (:meth:`PostgresServer.start` keeps the port), or makes a server
of its own with :func:`running_server`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

__all__ = ["PostgresServer", "postgres_server", "postgres_url", "running_server"]

#: The system user the server runs as when the tests run as root.
SERVER_USER = "voicebot-pgtest"
_START_TIMEOUT_SECONDS = 60


def _bindir() -> Path:
    """Where Debian put the server's programs (/usr/lib/postgresql/<major>/bin), newest major first."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path is None:
        pytest.fail("PostgreSQL is not installed: run tests/system-packages.sh (Debian's postgresql package)")
    return Path(on_path).parent


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (this one) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        # Not checked: a test process beside this one may have made the user a moment ago.
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin", SERVER_USER], capture_output=True, text=True)
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError(f"could not create the user {SERVER_USER}: {made.stderr.strip()}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster in ``directory`` (made by :meth:`init`), run by :meth:`start`."""

    user = "postgres"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self._bin = _bindir()
        self._owner = _server_user()

    def _run(self, *argv: str) -> None:
        command = [str(self._bin / argv[0]), *argv[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner.pw_name, "--", *command]
        # Run from the server's own directory: the server user may not enter the caller's.
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.directory,
                                timeout=_START_TIMEOUT_SECONDS + 30)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def init(self) -> None:
        """Make the cluster: the superuser's password from a file only it reads, passwords over TCP."""
        if self._owner is not None:
            os.chown(self.directory, self._owner.pw_uid, self._owner.pw_gid)
        self.directory.chmod(0o700)
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._owner is not None:
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}", "-E", "UTF8",
                      "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
                      "--no-instructions")
        finally:
            pwfile.unlink()

    def start(self) -> None:
        """Start the server (again) and wait until it accepts connections; a restart keeps the port."""
        self.port = self.port or _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(_START_TIMEOUT_SECONDS),
                  "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are cut, as a crash of the database host would)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        """A ``postgresql://`` URL for ``database`` (by default as the superuser)."""
        return (f"postgresql://{user or self.user}:{self.password if password is None else password}"
                f"@127.0.0.1:{self.port}/{database}")

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"test_{secrets.token_hex(6)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, cutting whatever still uses it."""
        if not re.fullmatch(r"test_[0-9a-f]+", name):
            raise ValueError(name)
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A server of its own in a temporary directory, removed when the block ends."""
    # Not under pytest's tmp_path: its parents are private to root, and the server user must get in.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="voicebot-pg-")))
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop("immediate")
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database of the session's server, as a URL with the superuser's password."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    if os.path.isdir(postgres_server.data):
        with contextlib.suppress(psycopg.OperationalError):  # a test that stopped the server for good
            postgres_server.drop_database(name)
