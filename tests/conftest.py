"""Fixtures every test directory may use: a real PostgreSQL server (see tests/postgres.py)."""

from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
