"""The catalog's services for the fleet: targets, clusters, placements, WAL copies."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgharbor.catalog import db
from pgharbor.catalog.models import WalCopy, WalFile
from pgharbor.catalog.schema import clusters, placements, targets, wal_copies
from pgharbor.catalog.urls import CatalogURL
from pgharbor.errors import Conflict, NotFound
from pgharbor.model import Cluster, Placement, Target


def now() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Catalog:
    """A connected catalog. Open with :func:`open_catalog`."""

    def __init__(self, engine: Engine, url: CatalogURL) -> None:
        self.engine = engine
        self.url = url

    # -- targets ---------------------------------------------------------------
    def add_target(self, name: str, url: str, *, target_id: str | None = None) -> Target:
        t = now()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(targets.c.id).where(targets.c.name == name)).first():
                raise Conflict(f"target {name!r} already exists")
            conn.execute(
                targets.insert().values(
                    id=target_id or str(uuid.uuid4()),
                    name=name,
                    url=url,
                    active=True,
                    created_at=t,
                    modified_at=t,
                )
            )
        return self.target(name)

    def target(self, name: str) -> Target:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(targets).where(targets.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no target named {name!r}", hint="see pgharbor target list")
        return _target(row)

    def targets(self) -> list[Target]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(targets).order_by(targets.c.name)).mappings().all()
        return [_target(r) for r in rows]

    def remove_target(self, name: str) -> None:
        target = self.target(name)
        with self.engine.begin() as conn:
            users = (
                conn.execute(
                    sa.select(clusters.c.name)
                    .join(placements, placements.c.cluster_id == clusters.c.id)
                    .where(placements.c.target_id == target.id)
                    .order_by(clusters.c.name)
                )
                .scalars()
                .all()
            )
            if users:
                raise Conflict(
                    f"target {name!r} is used by placements of cluster(s) {', '.join(users)}",
                    hint="remove those placements first",
                )
            conn.execute(wal_copies.delete().where(wal_copies.c.target_id == target.id))
            conn.execute(targets.delete().where(targets.c.id == target.id))

    # -- clusters --------------------------------------------------------------
    def add_cluster(self, values: Mapping[str, Any]) -> Cluster:
        t = now()
        with self.engine.begin() as conn:
            if conn.execute(
                sa.select(clusters.c.id).where(clusters.c.name == values["name"])
            ).first():
                raise Conflict(f"cluster {values['name']!r} already exists")
            clash = conn.execute(
                sa.select(clusters.c.name).where(
                    clusters.c.idc == values["idc"],
                    clusters.c.host == values["host"],
                    clusters.c.port == values["port"],
                )
            ).scalar()
            if clash:
                raise Conflict(
                    f"{values['host']}:{values['port']} in data centre {values['idc'] or '(none)'} "
                    f"is already registered as cluster {clash!r}"
                )
            row = dict(values)
            row.setdefault("id", str(uuid.uuid4()))
            conn.execute(clusters.insert().values(**row, active=True, created_at=t, modified_at=t))
        return self.cluster(values["name"])

    def cluster(self, name: str) -> Cluster:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(clusters).where(clusters.c.name == name)).mappings().first()
            )
        if row is None:
            raise NotFound(f"no cluster named {name!r}", hint="see pgharbor cluster list")
        return _cluster(row)

    def clusters(self) -> list[Cluster]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(clusters).order_by(clusters.c.name)).mappings().all()
        return [_cluster(r) for r in rows]

    def update_cluster(self, name: str, **values: Any) -> Cluster:
        c = self.cluster(name)
        with self.engine.begin() as conn:
            conn.execute(
                clusters.update().where(clusters.c.id == c.id).values(**values, modified_at=now())
            )
        return self.cluster(name)

    def delete_cluster(self, cluster_id: str) -> None:
        from pgharbor.catalog.schema import check_states, events

        with self.engine.begin() as conn:
            conn.execute(check_states.delete().where(check_states.c.cluster_id == cluster_id))
            conn.execute(events.delete().where(events.c.cluster_id == cluster_id))
            conn.execute(clusters.delete().where(clusters.c.id == cluster_id))

    # -- placements ------------------------------------------------------------
    def add_placement(self, cluster: str, target: str, priority: int) -> Placement:
        c, t = self.cluster(cluster), self.target(target)
        ts = now()
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(placements.c.id).where(
                    placements.c.cluster_id == c.id, placements.c.target_id == t.id
                )
            ).first()
            if exists:
                raise Conflict(f"cluster {cluster!r} already ships to target {target!r}")
            conn.execute(
                placements.insert().values(
                    cluster_id=c.id,
                    target_id=t.id,
                    priority=priority,
                    active=True,
                    created_at=ts,
                    modified_at=ts,
                )
            )
        return next(p for p in self.placements(cluster) if p.target == target)

    def update_placement(self, cluster: str, target: str, **values: Any) -> Placement:
        c, t = self.cluster(cluster), self.target(target)
        with self.engine.begin() as conn:
            done = conn.execute(
                placements.update()
                .where(placements.c.cluster_id == c.id, placements.c.target_id == t.id)
                .values(**values, modified_at=now())
            )
            if not done.rowcount:
                raise NotFound(f"cluster {cluster!r} does not ship to target {target!r}")
        return next(p for p in self.placements(cluster) if p.target == target)

    def remove_placement(self, cluster: str, target: str) -> None:
        """The placement and the cluster's copy rows on that target (the files stay)."""
        c, t = self.cluster(cluster), self.target(target)
        with self.engine.begin() as conn:
            done = conn.execute(
                placements.delete().where(
                    placements.c.cluster_id == c.id, placements.c.target_id == t.id
                )
            )
            if not done.rowcount:
                raise NotFound(f"cluster {cluster!r} does not ship to target {target!r}")
            conn.execute(
                wal_copies.delete().where(
                    wal_copies.c.cluster_id == c.id, wal_copies.c.target_id == t.id
                )
            )

    def update_target(self, name: str, **values: Any) -> Target:
        t = self.target(name)
        with self.engine.begin() as conn:
            conn.execute(
                targets.update().where(targets.c.id == t.id).values(**values, modified_at=now())
            )
        return self.target(name)

    def forget_cluster(self, name: str) -> None:
        """Every row of a cluster (placements, copies, backups, holds, restore points, its
        retention policy, WAL gaps, verification state, drills), in one transaction; what the targets hold is not touched."""
        from pgharbor.catalog.schema import (
            backup_copies,
            backup_holds,
            backups,
            drills,
            restore_points,
            retention_policies,
            verify_state,
            wal_gaps,
            wal_scans,
        )

        c = self.cluster(name)
        with self.engine.begin() as conn:
            ids = sa.select(backups.c.id).where(backups.c.cluster_id == c.id)
            conn.execute(backup_copies.delete().where(backup_copies.c.backup_id.in_(ids)))
            conn.execute(backup_holds.delete().where(backup_holds.c.backup_id.in_(ids)))
            tables = (
                drills,
                backups,
                restore_points,
                wal_scans,
                wal_copies,
                placements,
                retention_policies,
                wal_gaps,
                verify_state,
            )
            for table in tables:
                conn.execute(table.delete().where(table.c.cluster_id == c.id))
            conn.execute(clusters.delete().where(clusters.c.id == c.id))

    def placements(self, cluster: str) -> list[Placement]:
        c = self.cluster(cluster)
        q = (
            sa.select(
                targets.c.name.label("target"),
                targets.c.id.label("target_id"),
                targets.c.url,
                placements.c.priority,
                (placements.c.active & targets.c.active).label("active"),
                placements.c.created_at,
            )
            .join(targets, targets.c.id == placements.c.target_id)
            .where(placements.c.cluster_id == c.id)
            .order_by(placements.c.priority, targets.c.name)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            Placement(
                cluster=cluster,
                target=r["target"],
                target_id=r["target_id"],
                url=r["url"],
                priority=r["priority"],
                active=bool(r["active"]),
                created_at=aware(r["created_at"]),
            )
            for r in rows
        ]

    # -- WAL copies ------------------------------------------------------------
    def wal_files(self, cluster: str) -> list[WalFile]:
        c = self.cluster(cluster)
        active = {p.target for p in self.placements(cluster) if p.active}
        q = (
            sa.select(wal_copies, targets.c.name.label("target"))
            .join(targets, targets.c.id == wal_copies.c.target_id)
            .where(wal_copies.c.cluster_id == c.id)
            .order_by(wal_copies.c.name, targets.c.name)
        )
        files: dict[str, WalFile] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q).mappings():
                f = files.get(r["name"])
                if f is None or (f.checksum != r["checksum"] and r["status"] == "ok"):
                    f = files[r["name"]] = WalFile(
                        r["name"],
                        r["timeline"],
                        r["size"],
                        r["checksum"],
                        copies=list(f.copies) if f else [],
                    )
                f.copies.append(
                    WalCopy(
                        r["target"],
                        r["status"],
                        r["stored_size"],
                        aware(r["archived_at"]),
                        r["detail"],
                    )
                )
        for f in files.values():
            have = {cp.target for cp in f.copies if cp.status == "ok"}
            f.missing.extend(sorted(active - have))
        return list(files.values())

    def record_copies(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Upsert WAL copy rows (same rule as the hot path: an ok row is never downgraded)."""
        from pgharbor.catalog import lite

        rows = list(rows)
        if not rows:
            return 0
        raw = self.engine.raw_connection()
        try:
            lite.upsert_copies(raw, self.url.kind, rows)
            raw.commit()
        finally:
            raw.close()
        return len(rows)


def _target(r: Any) -> Target:
    return Target(
        r["id"],
        r["name"],
        r["url"],
        bool(r["active"]),
        aware(r["created_at"]),
        aware(r["modified_at"]),
    )


def _cluster(r: Any) -> Cluster:
    d = {k: r[k] for k in Cluster.__slots__ if k in r and k != "placements"}
    d["created_at"] = aware(d["created_at"])
    d["modified_at"] = aware(d["modified_at"])
    return Cluster(**d)


def open_catalog(
    url: str, *, check: bool = True, timeout: float = 10.0, pooled: bool = False
) -> Catalog:
    engine, cu = db.make_engine(
        url, timeout=timeout, create=False, pooled=pooled
    )  # only init creates
    if check:
        db.require_current(engine, cu)
    return Catalog(engine, cu)
