"""The catalog's record of restore drills.

A ``running`` row names its process (host and pid) and carries a heartbeat
(``modified_at``, renewed while the drill works). While it may be alive, its backup is
*in use*: expire keeps that backup (and so the WAL after it). A row whose process is
provably gone (on this host: the pid no longer runs; anywhere: no heartbeat for longer
than a lease lives) is marked failed by the next reader, so a killed drill never pins a
backup for ever.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pgharbor.catalog.backups import writer_gone
from pgharbor.catalog.repo import Catalog, aware, now
from pgharbor.catalog.schema import drills

RUNNING, OK, FAILED = "running", "ok", "failed"


@dataclass(frozen=True)
class CheckOutcome:
    """One check of a drill: passed, failed, or skipped (``ok`` None) with why."""

    name: str
    ok: bool | None
    detail: str = ""
    seconds: float = 0.0


@dataclass
class DrillRow:
    id: int
    cluster: str
    backup_id: str
    target: str
    status: str
    host: str
    pid: int
    started_at: datetime
    finished_at: datetime | None = None
    restore_s: float | None = None
    recovery_s: float | None = None
    total_s: float | None = None
    wal_segments: int | None = None
    bytes_restored: int | None = None
    reached_lsn: str | None = None
    checks: list[CheckOutcome] = field(default_factory=list)
    error: str | None = None
    scratch: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK


def _row(r: Any, cluster: str) -> DrillRow:
    checks = [CheckOutcome(**c) for c in json.loads(r["checks"] or "[]")]
    return DrillRow(
        r["id"],
        cluster,
        r["backup_id"],
        r["target"],
        r["status"],
        r["host"],
        r["pid"],
        aware(r["started_at"]),
        aware(r["finished_at"]) if r["finished_at"] else None,
        r["restore_s"],
        r["recovery_s"],
        r["total_s"],
        r["wal_segments"],
        r["bytes_restored"],
        r["reached_lsn"],
        checks,
        r["error"],
        r["scratch"],
    )


class DrillRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    def begin(self, cluster_id: str, backup_id: str, target: str, pid: int) -> int:
        t = now()
        with self.cat.engine.begin() as conn:
            done = conn.execute(
                drills.insert().values(
                    cluster_id=cluster_id,
                    backup_id=backup_id,
                    target=target,
                    status=RUNNING,
                    host=socket.gethostname(),
                    pid=pid,
                    started_at=t,
                    modified_at=t,
                )
            )
        key = done.inserted_primary_key
        assert key is not None
        return int(key[0])

    def heartbeat(self, drill_id: int) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(
                drills.update()
                .where(drills.c.id == drill_id, drills.c.status == RUNNING)
                .values(modified_at=now())
            )

    def finish(self, drill_id: int, ok: bool, checks: list[CheckOutcome], **values: Any) -> None:
        blob = json.dumps([c.__dict__ for c in checks])
        t = now()
        with self.cat.engine.begin() as conn:
            conn.execute(
                drills.update()
                .where(drills.c.id == drill_id)
                .values(
                    status=OK if ok else FAILED,
                    checks=blob,
                    finished_at=t,
                    modified_at=t,
                    **values,
                )
            )

    def reap(self) -> None:
        """Mark failed every running drill whose process is provably gone."""
        q = sa.select(drills.c.id, drills.c.host, drills.c.pid, drills.c.modified_at).where(
            drills.c.status == RUNNING
        )
        with self.cat.engine.connect() as conn:
            rows = conn.execute(q).all()
        here, at = socket.gethostname(), now()
        for did, host, pid, beat in rows:
            why = writer_gone(host, pid, aware(beat), at, here=here)
            if why is None:
                continue
            with self.cat.engine.begin() as conn:
                conn.execute(
                    drills.update()
                    .where(drills.c.id == did, drills.c.status == RUNNING)
                    .values(status=FAILED, error=f"drill died: {why}"[:2000], modified_at=at)
                )

    def in_use(self, cluster_id: str) -> frozenset[str]:
        """Backups that running drills (that may be alive) restore from: kept by expire."""
        self.reap()
        q = sa.select(drills.c.backup_id).where(
            drills.c.cluster_id == cluster_id, drills.c.status == RUNNING
        )
        with self.cat.engine.connect() as conn:
            return frozenset(r[0] for r in conn.execute(q))

    def for_cluster(self, cluster_id: str, cluster: str, limit: int = 50) -> list[DrillRow]:
        """The newest drills first."""
        self.reap()
        q = (
            sa.select(drills)
            .where(drills.c.cluster_id == cluster_id)
            .order_by(drills.c.started_at.desc(), drills.c.id.desc())
            .limit(limit)
        )
        with self.cat.engine.connect() as conn:
            return [_row(r, cluster) for r in conn.execute(q).mappings()]

    def drilled_at(self, cluster_id: str) -> dict[str, datetime]:
        """backup id -> when its newest successful drill finished."""
        q = (
            sa.select(drills.c.backup_id, sa.func.max(drills.c.finished_at))
            .where(drills.c.cluster_id == cluster_id, drills.c.status == OK)
            .group_by(drills.c.backup_id)
        )
        with self.cat.engine.connect() as conn:
            return {b: aware(t) for b, t in conn.execute(q) if t is not None}
