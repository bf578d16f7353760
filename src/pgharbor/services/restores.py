"""Restores, and the restore points they can aim at."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from pgharbor.domain.pitr import RecoveryTarget, RestorePoint
from pgharbor.errors import UsageError
from pgharbor.restore.restore import Options, RestoreResult
from pgharbor.restore.restore import restore as run_restore
from pgharbor.services.context import Services

Progress = Callable[[int, int], None]
Say = Callable[[str], None]


def tablespace_map(items: Iterable[str]) -> dict[str, str]:
    """``OLD=NEW`` items (old location or OID, new location)."""
    mapping = {}
    for item in items:
        old, eq, new = item.partition("=")
        if not eq or not old or not new:
            raise UsageError(f"--tablespace-map takes OLD=NEW, not {item!r}")
        mapping[old] = new
    return mapping


def restore(
    svc: Services,
    cluster: str,
    pgdata: Path,
    target: RecoveryTarget,
    options: Options,
    *,
    progress: Progress = lambda d, t: None,
    say: Say = lambda s: None,
) -> RestoreResult:
    if options.primary_conninfo and not options.standby:
        raise UsageError("--primary-conninfo goes with --standby")
    return run_restore(
        svc.catalog, svc.settings, cluster, pgdata, target, options, progress=progress, say=say
    )


def create_point(svc: Services, cluster: str, name: str) -> RestorePoint:
    from pgharbor.restore.points import create_point as create

    return create(svc.catalog, cluster, name)


def list_points(svc: Services, cluster: str) -> list[RestorePoint]:
    """Restore points in WAL order, after a scan of newly archived WAL for points made
    with plain SQL."""
    from pgharbor.restore.points import list_points as points

    return points(svc.catalog, svc.settings, cluster)
