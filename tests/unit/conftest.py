"""Unit tests start no server: every test here runs under the guard of
tests/fixtures/no_servers.py (no network socket, no psycopg connection, no PostgreSQL
program). A test that needs a server belongs in tests/integration."""

from __future__ import annotations

import pytest

from tests.fixtures import no_servers


@pytest.fixture(autouse=True)
def _no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    no_servers.install(monkeypatch)
