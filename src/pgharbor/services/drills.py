"""Restore drills: run one, list them, the newest per cluster (for status, check drill
and the metrics)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.drills import DrillRepo, DrillRow
from pgharbor.domain.pitr import RecoveryTarget
from pgharbor.domain.wal import format_lsn, parse_lsn
from pgharbor.drill.run import DrillResult, run_drill
from pgharbor.errors import ConfigError
from pgharbor.services import status
from pgharbor.services.context import Services

Say = Callable[[str], None]


def run(
    svc: Services,
    cluster: str,
    target: RecoveryTarget | None = None,
    *,
    backup_id: str | None = None,
    keep: bool = False,
    say: Say = lambda s: None,
) -> DrillResult:
    """Drill CLUSTER: by default the newest usable backup to the end of the archive, or,
    with the cluster's ``drill_target = "random"``, to a random point of its window."""
    if target is None:  # a given backup: to the end (a random point may precede it)
        target = RecoveryTarget() if backup_id else default_target(svc, cluster)
    return run_drill(
        svc.catalog,
        svc.settings,
        cluster,
        target,
        backup_id=backup_id,
        keep=keep,
        say=say,
    )


def default_target(svc: Services, cluster: str, rng: random.Random | None = None) -> RecoveryTarget:
    """What a drill given no target restores to (the cluster's ``drill_target``)."""
    choice = svc.settings.cluster_options(cluster).get("drill_target", "end")
    if choice == "end":
        return RecoveryTarget()
    if choice != "random":
        raise ConfigError(
            f"[clusters.{cluster}] drill_target must be end or random, not {choice!r}"
        )
    return random_target(svc, cluster, rng or random.Random())


def random_target(svc: Services, cluster: str, rng: random.Random) -> RecoveryTarget:
    """A random LSN of the newest timeline's recoverable window: from the end of the
    oldest usable backup on that timeline to the start of the window's last segment (a
    record starts at or after any such LSN, so recovery reaches it — past that, the rest
    of the last segment may be a WAL switch's padding that no record follows). A window
    too short for that (one segment) is drilled to its end."""
    st = status.cluster_status(svc, cluster)
    c = svc.catalog.cluster(cluster)
    windows = [w for w in st.windows if w.start_lsn is not None]
    if not windows:
        return RecoveryTarget()
    w = max(windows, key=lambda w: (w.timeline, parse_lsn(w.end_lsn)))
    start = parse_lsn(w.start_lsn or "0/0")
    stops = [
        parse_lsn(b.stop_lsn)
        for b in BackupRepo(svc.catalog).for_cluster(cluster)
        if b.status == "ok" and b.timeline == w.timeline and b.stop_lsn
        if b.start_lsn and parse_lsn(b.start_lsn) >= start
    ]
    high = parse_lsn(w.end_lsn) - c.wal_segment_size
    low = min(stops, default=high)
    if low >= high:
        return RecoveryTarget()
    return RecoveryTarget(kind="lsn", value=format_lsn(rng.randint(low, high)))


@dataclass
class DrillList:
    cluster: str
    drills: list[DrillRow]


def list_drills(svc: Services, cluster: str, limit: int = 50) -> DrillList:
    c = svc.catalog.cluster(cluster)
    return DrillList(c.name, DrillRepo(svc.catalog).for_cluster(c.id, c.name, limit))


@dataclass
class DrillSummary:
    """A cluster's drills at a glance: the newest one (any outcome) and the newest
    successful one (the cluster's "last proven recoverable")."""

    cluster: str
    latest: DrillRow | None
    last_success: DrillRow | None


def summary(svc: Services, cluster: str) -> DrillSummary:
    rows = list_drills(svc, cluster, limit=500).drills
    done = [r for r in rows if r.status != "running"]
    good = [r for r in done if r.ok]
    return DrillSummary(cluster, done[0] if done else None, good[0] if good else None)


def newest_per_cluster(svc: Services) -> list[DrillSummary]:
    """Every cluster's DrillSummary (the metrics pgharbor_drill_* render these:
    last_success.finished_at, latest.restore_s/recovery_s/total_s, latest.ok)."""
    return [summary(svc, c.name) for c in svc.catalog.clusters()]
