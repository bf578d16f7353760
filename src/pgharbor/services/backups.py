"""Base backups: taking one, listing, showing, deleting (with the safe GC), verifying."""

from __future__ import annotations

from collections.abc import Callable

from pgharbor.backup.create import BackupResult, create_backup
from pgharbor.backup.delete import DeleteResult, delete_backup
from pgharbor.backup.verify import VerifyResult, verify_backup
from pgharbor.catalog.backups import Backup, BackupRepo
from pgharbor.services.context import Services

Progress = Callable[[int, int], None]
Say = Callable[[str], None]


def create(
    svc: Services,
    cluster: str,
    *,
    target: str | None = None,
    wal_timeout: float = 300,
    progress: Progress = lambda d, t: None,
    say: Say = lambda s: None,
) -> BackupResult:
    return create_backup(
        svc.catalog,
        svc.settings,
        cluster,
        target=target,
        wal_timeout=wal_timeout,
        progress=progress,
        say=say,
    )


def list_backups(svc: Services, cluster: str) -> list[Backup]:
    """Oldest first, each with when it last passed a drill; a running backup whose
    writer is gone is marked failed on the way."""
    from dataclasses import replace

    from pgharbor.catalog.drills import DrillRepo

    found = BackupRepo(svc.catalog).for_cluster(cluster)
    drilled = DrillRepo(svc.catalog).drilled_at(svc.catalog.cluster(cluster).id)
    return [replace(b, drilled_at=drilled.get(b.id)) for b in found]


def show(svc: Services, cluster: str, backup_id: str) -> Backup:
    return BackupRepo(svc.catalog).get(cluster, backup_id)


def delete(svc: Services, cluster: str, backup_id: str) -> DeleteResult:
    return delete_backup(svc.catalog, svc.settings, cluster, backup_id)


def verify(svc: Services, cluster: str, backup_id: str) -> VerifyResult:
    return verify_backup(svc.catalog, svc.settings, cluster, backup_id)
