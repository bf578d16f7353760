"""The guard of tests/unit/conftest.py fires (this module asks for no fixture: it is on)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.no_servers import pg_program_in

REFUSED = pytest.fail.Exception
MESSAGE = "unit tests start no server and open no network connection"


def test_tcp_connect_and_bind_are_refused() -> None:
    with socket.socket() as s, pytest.raises(REFUSED, match=MESSAGE):
        s.connect(("127.0.0.1", 9))
    with socket.socket(socket.AF_INET6) as s, pytest.raises(REFUSED, match="connect_ex"):
        s.connect_ex(("::1", 9))
    with socket.socket() as s, pytest.raises(REFUSED, match="bind"):
        s.bind(("127.0.0.1", 5432))
    with pytest.raises(REFUSED, match="tests/integration"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_unix_socket_path_is_refused_socketpair_allowed(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(REFUSED, match=r"\.s\.PGSQL"):
        s.connect(str(tmp_path / ".s.PGSQL.5432"))
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"ping")
        assert b.recv(4) == b"ping"


def test_psycopg_is_refused() -> None:
    with pytest.raises(REFUSED, match=r"psycopg\.connect"):
        psycopg.connect("host=/tmp port=5432")
    with pytest.raises(REFUSED, match=r"psycopg\.connect"):
        psycopg.Connection.connect("host=/tmp port=5432")


def test_postgres_programs_are_refused() -> None:
    initdb = "/usr/lib/postgresql/15/bin/initdb"
    with pytest.raises(REFUSED, match="initdb"):
        subprocess.run([initdb, "-D", "/nonexistent"], check=False)
    with pytest.raises(REFUSED, match="pg_ctl"):
        subprocess.run(["runuser", "-u", "postgres", "--", "/usr/bin/pg_ctl", "start"], check=False)
    with pytest.raises(REFUSED, match="psql"):
        subprocess.run("echo x | psql -X", shell=True, check=False)
    with pytest.raises(REFUSED, match="pg_basebackup"):
        subprocess.run(["sh", "-c", "cd / && pg_basebackup -D x"], check=False)
    with pytest.raises(REFUSED, match="postgres"):
        os.execv("/usr/lib/postgresql/15/bin/postgres", ["postgres", "-D", "/x"])


def test_other_programs_run() -> None:
    out = subprocess.run(["sh", "-c", "echo postgres"], capture_output=True, check=True)
    assert out.stdout == b"postgres\n"  # the word is not a program here
    proc = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True)
    assert proc.stdout == b"1\n"
    assert pg_program_in(["runuser", "-u", "postgres", "--", "id"]) is None
    assert pg_program_in(["chown", "postgres", "/tmp/x"]) is None
    assert pg_program_in(["sh", "-c", "sleep 1; pgbench -i"]) == "pgbench"


def test_listen_refused_port_zero_bind_allowed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # what urllib3 does on import
        with pytest.raises(REFUSED, match="listen"):
            s.listen()


def test_words_that_only_look_like_programs() -> None:
    url = "postgresql://u@db1/postgres"
    assert pg_program_in(["pgharbor", "restore", "--primary-conninfo", url]) is None
    assert pg_program_in(["runuser", "-u", "postgres", "--", "initdb", "-D", "x"]) == "initdb"
    assert pg_program_in(["sh", "-c", "if true; then psql -c 'select 1'; fi"]) == "psql"
