"""The catalog's record of base backups.

A ``running`` row names its writer (host and pid) and carries a heartbeat
(``modified_at``, renewed with the writer's leases). A row whose writer is gone — on
this host, its process no longer runs; anywhere, no heartbeat for longer than a lease
lives — is marked ``failed`` by the next command that reads the cluster's backups, so
it never blocks anything and is never mistaken for a backup in progress.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pgharbor.backup.lease import SKEW, TTL
from pgharbor.catalog.repo import Catalog, aware, now
from pgharbor.catalog.schema import backup_copies, backup_holds, backups, targets
from pgharbor.errors import Conflict, NotFound
from pgharbor.storage.base import process_gone

log = logging.getLogger(__name__)
STALE_AFTER = TTL + SKEW  # seconds without a heartbeat after which a writer is gone


@dataclass(frozen=True)
class Backup:
    id: str
    cluster: str
    status: str
    label: str
    timeline: int | None
    start_lsn: str | None
    stop_lsn: str | None
    start_time: datetime
    stop_time: datetime | None
    stop_xmin: int | None
    logical_bytes: int
    stored_bytes: int
    wal_start: str | None
    wal_stop: str | None
    targets: list[str]
    error: str | None
    host: str = ""
    pid: int | None = None
    drilled_at: datetime | None = None  # its newest passed restore drill (backup list)


def writer_gone(
    host: str,
    pid: int | None,
    heartbeat: datetime,
    at: datetime,
    *,
    here: str,
    gone: Callable[[int], bool] = process_gone,
) -> str | None:
    """Why the writer of a running backup is provably gone, or None while it may live."""
    if host == here and pid and gone(pid):
        return f"its writer (pid {pid} on {host}) is gone"
    age = (at - heartbeat).total_seconds()
    if age > STALE_AFTER:
        return f"its writer (pid {pid} on {host or 'an unknown host'}) gave no sign of life for {age:.0f} s"
    return None


class BackupRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    def begin(
        self,
        backup_id: str,
        cluster_id: str,
        label: str,
        target_ids: list[str],
        host: str,
        pid: int,
    ) -> None:
        t = now()
        with self.cat.engine.begin() as conn:
            conn.execute(
                backups.insert().values(
                    id=backup_id,
                    cluster_id=cluster_id,
                    status="running",
                    label=label,
                    start_time=t,
                    host=host,
                    pid=pid,
                    created_at=t,
                    modified_at=t,
                )
            )
            for tid in target_ids:
                conn.execute(
                    backup_copies.insert().values(
                        backup_id=backup_id, target_id=tid, status="running"
                    )
                )

    def update(self, backup_id: str, **values: Any) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(
                backups.update()
                .where(backups.c.id == backup_id)
                .values(**values, modified_at=now())
            )

    def _if_running(self, backup_id: str, **values: Any) -> bool:
        with self.cat.engine.begin() as conn:
            done = conn.execute(
                backups.update()
                .where(backups.c.id == backup_id, backups.c.status == "running")
                .values(**values, modified_at=now())
            )
        return bool(done.rowcount)

    def heartbeat(self, backup_id: str) -> None:
        """The writer is alive (called with each lease renewal)."""
        self._if_running(backup_id)

    def finish(self, backup_id: str, **values: Any) -> None:
        """running -> ok, or Conflict when the row is no longer a running backup (it was
        marked failed, its writer taken for dead, or deleted): then it must not be ok."""
        if not self._if_running(backup_id, status="ok", **values):
            raise Conflict(
                f"backup {backup_id} is no longer recorded as running (marked failed or "
                "deleted meanwhile): it is not usable"
            )

    def fail_running(self, backup_id: str, reason: str) -> bool:
        """Mark a running backup failed (a dead writer's); False when it was not running."""
        failed = self._if_running(backup_id, status="failed", error=reason[:2000])
        if failed:
            log.warning("warning: backup %s marked failed: %s", backup_id, reason)
        return failed

    def reap(self, cluster_id: str) -> None:
        """Mark failed every running backup of the cluster whose writer is gone."""
        q = sa.select(backups.c.id, backups.c.host, backups.c.pid, backups.c.modified_at).where(
            backups.c.cluster_id == cluster_id, backups.c.status == "running"
        )
        with self.cat.engine.connect() as conn:
            rows = conn.execute(q).all()
        here, at = socket.gethostname(), now()
        for bid, host, pid, beat in rows:
            why = writer_gone(host, pid, aware(beat), at, here=here)
            if why is not None:
                self.fail_running(bid, why)

    def finish_copy(self, backup_id: str, target_id: str, status: str, stored_bytes: int) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(
                backup_copies.update()
                .where(
                    backup_copies.c.backup_id == backup_id, backup_copies.c.target_id == target_id
                )
                .values(status=status, stored_bytes=stored_bytes)
            )

    def for_cluster(self, cluster: str, *, status: str | None = None) -> list[Backup]:
        """The cluster's backups, oldest first (running ones of dead writers now failed)."""
        c = self.cat.cluster(cluster)
        self.reap(c.id)
        q = sa.select(backups).where(backups.c.cluster_id == c.id)
        if status:
            q = q.where(backups.c.status == status)
        q = q.order_by(backups.c.start_time, backups.c.id)
        tq = (
            sa.select(backup_copies.c.backup_id, targets.c.name)
            .join(targets, targets.c.id == backup_copies.c.target_id)
            .join(backups, backups.c.id == backup_copies.c.backup_id)
            .where(backups.c.cluster_id == c.id, backup_copies.c.status == "ok")
            .order_by(targets.c.name)
        )
        with self.cat.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            where: dict[str, list[str]] = {}
            for bid, tname in conn.execute(tq):
                where.setdefault(bid, []).append(tname)
        return [_backup(r, cluster, where.get(r["id"], [])) for r in rows]

    def get(self, cluster: str, backup_id: str) -> Backup:
        for b in self.for_cluster(cluster):
            if b.id == backup_id:
                return b
        raise NotFound(
            f"cluster {cluster!r} has no backup {backup_id!r}",
            hint=f"see pgharbor backup list {cluster}",
        )

    def copies(self, backup_id: str) -> list[tuple[str, str, str]]:
        """(target id, target name, status) of each copy."""
        q = (
            sa.select(targets.c.id, targets.c.name, backup_copies.c.status)
            .join(targets, targets.c.id == backup_copies.c.target_id)
            .where(backup_copies.c.backup_id == backup_id)
        )
        with self.cat.engine.connect() as conn:
            return [(a, b, c) for a, b, c in conn.execute(q)]

    def add_finished(self, row: dict[str, Any], copies: dict[str, int]) -> None:
        """Record a finished (``ok``) backup read back from its manifests (catalog
        rebuild), with its copy on each target id (its stored bytes there)."""
        t = now()
        with self.cat.engine.begin() as conn:
            conn.execute(backups.insert().values(**row, status="ok", created_at=t, modified_at=t))
            for tid, stored in copies.items():
                conn.execute(
                    backup_copies.insert().values(
                        backup_id=row["id"], target_id=tid, status="ok", stored_bytes=stored
                    )
                )

    def delete(self, backup_id: str) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(backup_copies.delete().where(backup_copies.c.backup_id == backup_id))
            conn.execute(backup_holds.delete().where(backup_holds.c.backup_id == backup_id))
            conn.execute(backups.delete().where(backups.c.id == backup_id))


def _backup(r: Any, cluster: str, where: list[str]) -> Backup:
    return Backup(
        id=r["id"],
        cluster=cluster,
        status=r["status"],
        label=r["label"],
        timeline=r["timeline"],
        start_lsn=r["start_lsn"],
        stop_lsn=r["stop_lsn"],
        start_time=aware(r["start_time"]),
        stop_time=aware(r["stop_time"]) if r["stop_time"] else None,
        stop_xmin=r["stop_xmin"],
        logical_bytes=r["logical_bytes"],
        stored_bytes=r["stored_bytes"],
        wal_start=r["wal_start"],
        wal_stop=r["wal_stop"],
        targets=where,
        error=r["error"],
        host=r["host"],
        pid=r["pid"],
    )
