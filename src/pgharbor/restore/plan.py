"""What a restore will do before it touches anything: the timeline it follows, the backup
it starts from, and whether the archive can reach the target at all (PostgreSQL would
otherwise replay everything and fail only after the restore)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pgharbor.catalog.backups import Backup, BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.pitr import (
    BackupPoint,
    RecoveryTarget,
    RestorePoint,
    archive_end,
    check_reachable,
    choose_backup,
    occurrences,
)
from pgharbor.domain.wal import parse_lsn
from pgharbor.errors import Conflict, NotFound, UsageError
from pgharbor.model import Cluster, Placement
from pgharbor.restore.timelines import resolve_timeline
from pgharbor.settings import Settings


@dataclass(frozen=True)
class Plan:
    backup: Backup
    timeline: int
    history: TimelineHistory
    point: RestorePoint | None  # the restore point a --target-name restore stops at


def _archived(catalog: Catalog, cluster: Cluster) -> list[tuple[str, datetime]]:
    """(name, when its first good copy was made) of every archived file."""
    out = []
    for f in catalog.wal_files(cluster.name):
        times = [c.archived_at for c in f.copies if c.status == "ok"]
        if times:
            out.append((f.name, min(times)))
    return out


def _restore_point(
    catalog: Catalog,
    settings: Settings,
    cluster: Cluster,
    target: RecoveryTarget,
    history: TimelineHistory,
) -> tuple[RestorePoint | None, list[RestorePoint]]:
    if target.kind != "name":
        return None, []
    from pgharbor.restore.points import list_points

    assert target.value is not None
    points = list_points(catalog, settings, cluster.name)
    found = occurrences(points, target.value, history)
    if not found:
        elsewhere = sorted({p.timeline for p in points if p.name == target.value})
        raise NotFound(
            f"the archive of cluster {cluster.name!r} holds no restore point named "
            f"{target.value!r}"
            + (
                f" on the history of timeline {history.timeline} (only on timeline(s) "
                f"{', '.join(map(str, elsewhere))})"
                if elsewhere
                else ""
            ),
            hint=f"see pgharbor restore-point list {cluster.name}",
        )
    return found[-1], points


def plan_restore(
    catalog: Catalog,
    settings: Settings,
    cluster: Cluster,
    places: list[Placement],
    target: RecoveryTarget,
    backup_id: str | None,
) -> Plan:
    repo = BackupRepo(catalog)
    timeline, history = resolve_timeline(settings, cluster, places, target, repo)
    point, points = _restore_point(catalog, settings, cluster, target, history)
    if target.kind in ("time", "lsn", "name"):
        end = archive_end(_archived(catalog, cluster), history, cluster.wal_segment_size)
        check_reachable(target, end, parse_lsn(point.lsn) if point else None)
    if backup_id:
        chosen = repo.get(cluster.name, backup_id)
        if chosen.status != "ok":
            raise Conflict(f"backup {backup_id} is {chosen.status}, not usable")
        if point and parse_lsn(chosen.stop_lsn or "0/0") >= parse_lsn(point.lsn):
            raise UsageError(
                f"backup {backup_id} ends at {chosen.stop_lsn}, after restore point "
                f"{point.name!r} ({point.lsn}): recovery could never stop there",
                hint="leave out --backup: the restore picks one that precedes it",
            )
        return Plan(chosen, timeline, history, point)
    candidates = [
        BackupPoint(
            b.id, b.timeline or 1, b.stop_lsn or "0/0", b.stop_time, b.stop_xmin, b.start_lsn
        )
        for b in repo.for_cluster(cluster.name, status="ok")
        if b.stop_time and b.stop_lsn
    ]
    if not candidates:
        raise NotFound(
            f"cluster {cluster.name!r} has no usable backup",
            hint=f"pgharbor backup create {cluster.name}",
        )
    best = choose_backup(candidates, target, history, points)
    return Plan(repo.get(cluster.name, best.id), timeline, history, point)
