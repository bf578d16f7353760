"""Restore drills: run one, list them, the newest per cluster (for status, check drill
and the metrics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgharbor.catalog.drills import DrillRepo, DrillRow
from pgharbor.domain.pitr import RecoveryTarget
from pgharbor.drill.run import DrillResult, run_drill
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
    """Drill CLUSTER: by default the newest usable backup to the end of the archive."""
    return run_drill(
        svc.catalog,
        svc.settings,
        cluster,
        target or RecoveryTarget(),
        backup_id=backup_id,
        keep=keep,
        say=say,
    )


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
