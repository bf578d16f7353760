"""Reading a managed cluster's identity and keeping pgharbor's fingerprint in it."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgharbor.errors import Conflict, PostgresError, UsageError


@dataclass(frozen=True)
class ServerIdentity:
    system_identifier: int
    version: str
    version_num: int
    wal_segment_size: int
    host: str
    port: int
    in_recovery: bool


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(dsn: str, *, timeout: int = 10, autocommit: bool = True) -> psycopg.Connection[Any]:
    if not dsn.strip():  # libpq would try its defaults: whatever server listens locally
        raise UsageError(
            "no DSN is recorded for this cluster (a rebuilt catalog keeps none)",
            hint="pgharbor cluster set NAME --dsn DSN",
        )
    try:
        return psycopg.connect(dsn, connect_timeout=timeout, autocommit=autocommit)
    except psycopg.Error as exc:
        raise PostgresError(f"cannot connect to the cluster ({_first_line(exc)})") from None


def read_identity(conn: psycopg.Connection[Any]) -> ServerIdentity:
    try:
        row = conn.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system()),"
            " current_setting('server_version'), current_setting('server_version_num')::int,"
            " (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),"
            " pg_is_in_recovery()"
        ).fetchone()
    except psycopg.Error as exc:
        raise PostgresError(f"cannot read the cluster's identity: {_first_line(exc)}") from None
    assert row is not None
    host = conn.info.host
    if not host or host.startswith("/"):
        host = socket.getfqdn()
    return ServerIdentity(
        system_identifier=int(row[0]),
        version=str(row[1]).split()[0],
        version_num=int(row[2]),
        wal_segment_size=int(row[3]),
        host=host,
        port=int(conn.info.port),
        in_recovery=bool(row[4]),
    )


def require_primary(
    conn: psycopg.Connection[Any], system_identifier: str, cluster: str, standby_error: str
) -> ServerIdentity:
    """The server's identity, refused unless it is the cluster's (same system identifier)
    and a primary (``standby_error`` says what a standby cannot do)."""
    ident = read_identity(conn)
    if str(ident.system_identifier) != system_identifier:
        raise PostgresError(
            f"the server at the DSN has system identifier {ident.system_identifier}, "
            f"not {system_identifier} of cluster {cluster!r}"
        )
    if ident.in_recovery:
        raise PostgresError(standby_error)
    return ident


def read_fingerprint(conn: psycopg.Connection[Any]) -> tuple[str, datetime] | None:
    try:
        exists = conn.execute("SELECT to_regclass('pgharbor.fingerprint') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(
            "SELECT cluster_id::text, registered_at FROM pgharbor.fingerprint"
        ).fetchone()
    except psycopg.Error as exc:
        raise PostgresError(f"cannot read pgharbor.fingerprint: {_first_line(exc)}") from None
    return (row[0], row[1]) if row else None


def write_fingerprint(conn: psycopg.Connection[Any], cluster_id: str, at: datetime) -> None:
    """Record the catalog id in the production database (one row, replaced atomically)."""
    try:
        with conn.transaction():
            conn.execute("CREATE SCHEMA IF NOT EXISTS pgharbor")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS pgharbor.fingerprint ("
                " cluster_id uuid PRIMARY KEY, registered_at timestamptz NOT NULL,"
                " singleton boolean NOT NULL DEFAULT true UNIQUE CHECK (singleton))"
            )
            current = conn.execute("SELECT cluster_id::text FROM pgharbor.fingerprint").fetchone()
            if current and current[0] != cluster_id:
                raise Conflict(
                    f"this database already carries the pgharbor fingerprint of cluster id {current[0]}"
                )
            conn.execute("DELETE FROM pgharbor.fingerprint")
            conn.execute(
                "INSERT INTO pgharbor.fingerprint (cluster_id, registered_at) VALUES (%s, %s)",
                (cluster_id, at),
            )
    except psycopg.errors.ReadOnlySqlTransaction:
        raise PostgresError(
            "cannot write the fingerprint: the server is a standby (read-only)",
            hint="register the primary",
        ) from None
    except psycopg.Error as exc:
        raise PostgresError(f"cannot write pgharbor.fingerprint: {_first_line(exc)}") from None
