"""Lean catalog access for the hot path (wal push / wal fetch), with no ORM import.

Plain DB-API (stdlib sqlite3, or psycopg for PostgreSQL) over the tables defined in
catalog/schema.py. Two statements matter: read a cluster with its placements, and
upsert WAL copy rows. tests/unit/test_catalog.py runs both against SQLite and
PostgreSQL catalogs built by the real migrations.
"""

from __future__ import annotations

from pgharbor.errors import CatalogError, CatalogRejected, CatalogUnavailable, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from pgharbor.catalog.urls import CatalogURL

COPY_COLUMNS = (
    "cluster_id",
    "target_id",
    "name",
    "timeline",
    "size",
    "stored_size",
    "checksum",
    "archived_at",
    "status",
    "detail",
)

_UPSERT = (
    f"INSERT INTO wal_copies ({', '.join(COPY_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(COPY_COLUMNS))}) "
    "ON CONFLICT (cluster_id, target_id, name) DO UPDATE SET "
    "timeline = excluded.timeline, size = excluded.size, stored_size = excluded.stored_size, "
    "checksum = excluded.checksum, archived_at = excluded.archived_at, "
    "status = excluded.status, detail = excluded.detail "
    "WHERE wal_copies.status <> 'ok'"
)

_CLUSTER = (
    "SELECT id, name, system_identifier, wal_segment_size, required_copies, active, archive_async "
    "FROM clusters WHERE name = %s"
)
_PLACEMENTS = (
    "SELECT t.id, t.name, t.url, p.priority FROM placements p "
    "JOIN targets t ON t.id = p.target_id "
    "WHERE p.cluster_id = %s AND p.active AND t.active ORDER BY p.priority, t.name"
)


def _sql(kind: str, query: str) -> str:
    return query.replace("%s", "?") if kind == "sqlite" else query


def connect(cu: CatalogURL, timeout: float) -> Any:
    """Open a DB-API connection, or raise CatalogUnavailable with one clear line."""
    if cu.kind == "sqlite":
        import sqlite3

        try:
            path = str(cu.path).replace("%", "%25").replace("?", "%3F").replace("#", "%23")
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=timeout)
            conn.execute("PRAGMA foreign_keys = ON")  # as the SQLAlchemy catalog has it
            return conn
        except sqlite3.Error as exc:
            raise CatalogUnavailable(f"cannot open the catalog {cu.display()}: {exc}") from None
    import psycopg

    try:
        return psycopg.connect(cu.conninfo, connect_timeout=max(1, round(timeout)))
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogUnavailable(f"cannot reach the catalog {cu.display()}: {reason}") from None


def _db_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    errors: list[type[BaseException]] = [sqlite3.Error]
    import sys

    if "psycopg" in sys.modules:
        errors.append(sys.modules["psycopg"].Error)
    return tuple(errors)


def _rejections() -> tuple[type[BaseException], ...]:
    """Errors that say the rows are wrong (a constraint, a bad value), not the connection:
    retrying them can never succeed."""
    import sqlite3

    errors: list[type[BaseException]] = [sqlite3.IntegrityError, sqlite3.DataError]
    import sys

    if "psycopg" in sys.modules:
        pg = sys.modules["psycopg"]
        errors += [pg.IntegrityError, pg.DataError]
    return tuple(errors)


def load_cluster(conn: Any, kind: str, name: str) -> dict[str, Any]:
    """The cluster's identity and its active placements in priority order."""
    try:
        cur = conn.cursor()
        cur.execute(_sql(kind, _CLUSTER), (name,))
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"no cluster named {name!r} in the catalog")
        cid, cname, sysid, segsize, required, active, archive_async = row
        cur.execute(_sql(kind, _PLACEMENTS), (cid,))
        placements = [
            {"target_id": t, "target": n, "url": u, "priority": p} for t, n, u, p in cur.fetchall()
        ]
        conn.rollback()
    except _db_errors() as exc:
        raise CatalogError(f"reading cluster {name!r} from the catalog failed: {exc}") from None
    return {
        "id": cid,
        "name": cname,
        "system_identifier": int(sysid),
        "wal_segment_size": int(segsize),
        "required_copies": int(required),
        "active": bool(active),
        "archive_async": bool(archive_async),
        "placements": placements,
    }


def _timestamp(kind: str, value: str) -> Any:
    from datetime import UTC, datetime  # loaded by sqlite3 and psycopg anyway

    dt = datetime.fromisoformat(value)
    if kind == "sqlite":  # the text form SQLAlchemy's SQLite DateTime reads back
        return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return dt


def upsert_copies(conn: Any, kind: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert or update WAL copy rows; an ``ok`` row is never downgraded. Caller commits.
    CatalogRejected when the catalog refuses the rows themselves (then nothing of this
    call is kept: roll back), CatalogError when it cannot be reached."""
    params = []
    try:
        for r in rows:
            values = [r.get(c) for c in COPY_COLUMNS]
            values[COPY_COLUMNS.index("archived_at")] = _timestamp(kind, str(r["archived_at"]))
            params.append(tuple(values))
    except (KeyError, ValueError, TypeError) as exc:
        raise CatalogRejected(f"a WAL copy row is malformed: {exc!r}") from None
    try:
        cur = conn.cursor()
        cur.executemany(_sql(kind, _UPSERT), params)
    except _rejections() as exc:
        raise CatalogRejected(f"the catalog refused a WAL copy row: {exc}") from None
    except _db_errors() as exc:
        raise CatalogError(f"recording WAL copies in the catalog failed: {exc}") from None


def recorded_checksums(conn: Any, kind: str, cluster_id: str, name: str) -> set[str]:
    """The checksums of the ``ok`` copies the catalog records for one file."""
    try:
        cur = conn.cursor()
        cur.execute(
            _sql(
                kind,
                "SELECT DISTINCT checksum FROM wal_copies "
                "WHERE cluster_id = %s AND name = %s AND status = 'ok'",
            ),
            (cluster_id, name),
        )
        found = {str(r[0]) for r in cur.fetchall()}
        conn.rollback()
    except _db_errors() as exc:
        raise CatalogError(f"reading the catalog failed: {exc}") from None
    return found


def recorded_copies(conn: Any, kind: str, cluster_id: str) -> set[tuple[str, str]]:
    """(target id, file name) of every ``ok`` copy the catalog records for one cluster."""
    try:
        cur = conn.cursor()
        cur.execute(
            _sql(
                kind,
                "SELECT target_id, name FROM wal_copies WHERE cluster_id = %s AND status = 'ok'",
            ),
            (cluster_id,),
        )
        found = {(str(t), str(n)) for t, n in cur.fetchall()}
        conn.rollback()
    except _db_errors() as exc:
        raise CatalogError(f"reading the catalog failed: {exc}") from None
    return found
