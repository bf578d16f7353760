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


def rows(probe: Probe, cluster: Cluster, query: str) -> list[dict[str, Any]]:
    key = f"conn:{cluster.name}"
    conn: psycopg.Connection[Any] | None = probe.cache.get(key)
    if conn is None:
        conn = connect(cluster.dsn, timeout=10)
        probe.cache.setdefault("close", []).append(conn)
        conn.execute("SET statement_timeout = '10s'")  # a check never hangs on a query
        if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
            raise NotPrimary(f"the DSN of {cluster.name} reaches a server in recovery")
        probe.cache[key] = conn
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(query).fetchall())
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PgharborError(f"query on the primary failed: {text}") from None
