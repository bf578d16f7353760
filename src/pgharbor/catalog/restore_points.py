"""The catalog's index of named restore points, and how far the archived WAL of each
timeline has been scanned for the ones made with plain SQL."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from pgharbor.catalog.repo import Catalog, aware, now
from pgharbor.catalog.schema import restore_points, wal_scans
from pgharbor.domain.pitr import RestorePoint
from pgharbor.domain.wal import parse_lsn


class RestorePointRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    def add(self, cluster_id: str, points: Iterable[RestorePoint]) -> int:
        """Record restore points; one already known (same timeline and LSN) is kept as it
        is (a created one stays "created" when the scan finds it). Returns how many are new.
        Two scans at once may race on a row: the loser's transaction is tried again."""
        points = list(points)
        try:
            return self._add(cluster_id, points)
        except sa.exc.IntegrityError:
            return self._add(cluster_id, points)

    def _add(self, cluster_id: str, points: list[RestorePoint]) -> int:
        added = 0
        with self.cat.engine.begin() as conn:
            for p in points:
                known = conn.execute(
                    sa.select(restore_points.c.id).where(
                        restore_points.c.cluster_id == cluster_id,
                        restore_points.c.timeline == p.timeline,
                        restore_points.c.lsn == p.lsn,
                    )
                ).first()
                if known:
                    continue
                conn.execute(
                    restore_points.insert().values(
                        cluster_id=cluster_id,
                        name=p.name,
                        lsn=p.lsn,
                        timeline=p.timeline,
                        time=p.time,
                        source=p.source,
                        created_at=now(),
                    )
                )
                added += 1
        return added

    def for_cluster(self, cluster_id: str) -> list[RestorePoint]:
        """Every known restore point of the cluster, in WAL order."""
        q = sa.select(restore_points).where(restore_points.c.cluster_id == cluster_id)
        with self.cat.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        found = [
            RestorePoint(
                r["name"],
                r["lsn"],
                r["timeline"],
                aware(r["time"]) if r["time"] else None,
                r["source"],
            )
            for r in rows
        ]
        return sorted(found, key=lambda p: (parse_lsn(p.lsn), p.timeline))

    def scanned(self, cluster_id: str) -> dict[int, str]:
        """The last segment scanned on each timeline."""
        q = sa.select(wal_scans.c.timeline, wal_scans.c.scanned_to).where(
            wal_scans.c.cluster_id == cluster_id
        )
        with self.cat.engine.connect() as conn:
            return {int(t): str(s) for t, s in conn.execute(q)}

    def set_scanned(self, cluster_id: str, timeline: int, segment: str) -> None:
        with self.cat.engine.begin() as conn:
            done = conn.execute(
                wal_scans.update()
                .where(wal_scans.c.cluster_id == cluster_id, wal_scans.c.timeline == timeline)
                .values(scanned_to=segment, modified_at=now())
            )
            if done.rowcount == 0:
                conn.execute(
                    wal_scans.insert().values(
                        cluster_id=cluster_id,
                        timeline=timeline,
                        scanned_to=segment,
                        modified_at=now(),
                    )
                )
