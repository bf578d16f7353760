"""Read-only queries on a cluster's primary, through the DSN the catalog records (a role
with pg_monitor suffices). One connection per cluster and run, closed by the caller."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgharbor.errors import PgharborError
from pgharbor.model import Cluster
from pgharbor.monitor.registry import Probe
from pgharbor.pg.identity import connect


class NotPrimary(PgharborError):
    """The cluster's DSN reaches a server in recovery."""


def _open(probe: Probe, cluster: Cluster) -> psycopg.Connection[Any]:
    conn = connect(cluster.dsn, timeout=10)
    probe.cache.setdefault("close", []).append(conn)
    try:
        conn.execute("SET statement_timeout = '10s'")  # a check never hangs on a query
        primary = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)
    except psycopg.Error as exc:
        raise PgharborError(f"the primary did not answer: {str(exc).strip()}") from None
    if not primary:
        raise NotPrimary(f"the DSN of {cluster.name} reaches a server in recovery")
    return conn


def rows(probe: Probe, cluster: Cluster, query: str) -> list[dict[str, Any]]:
    key = f"conn:{cluster.name}"
    conn: psycopg.Connection[Any] | PgharborError | None = probe.cache.get(key)
    if isinstance(conn, PgharborError):  # the run's other checks of it: no second wait
        raise conn
    if conn is None:
        try:
            conn = _open(probe, cluster)
        except PgharborError as exc:
            probe.cache[key] = exc
            raise
        probe.cache[key] = conn
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(query).fetchall())
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PgharborError(f"query on the primary failed: {text}") from None
