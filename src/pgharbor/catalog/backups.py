"""The catalog's record of base backups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pgharbor.catalog.repo import Catalog, _aware, now
from pgharbor.catalog.schema import backup_copies, backups, clusters, targets
from pgharbor.errors import NotFound


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
        c = self.cat.cluster(cluster)
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

    def running_on_target(self, target_id: str) -> list[tuple[str, str]]:
        q = (
            sa.select(backups.c.id, clusters.c.name)
            .join(backup_copies, backup_copies.c.backup_id == backups.c.id)
            .join(clusters, clusters.c.id == backups.c.cluster_id)
            .where(backup_copies.c.target_id == target_id, backups.c.status == "running")
        )
        with self.cat.engine.connect() as conn:
            return [(a, b) for a, b in conn.execute(q)]

    def delete(self, backup_id: str) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(backup_copies.delete().where(backup_copies.c.backup_id == backup_id))
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
        start_time=_aware(r["start_time"]),
        stop_time=_aware(r["stop_time"]) if r["stop_time"] else None,
        stop_xmin=r["stop_xmin"],
        logical_bytes=r["logical_bytes"],
        stored_bytes=r["stored_bytes"],
        wal_start=r["wal_start"],
        wal_stop=r["wal_stop"],
        targets=where,
        error=r["error"],
    )
