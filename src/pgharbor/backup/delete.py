"""backup delete: remove a backup and free exactly the chunks no other backup uses.

The exclusive ``gc`` lease is taken on every target of the backup before anything
changes (Busy otherwise: the catalog and the targets stay as they were), and held to the
end; each destructive step of the collection confirms it first (see backup.gc). A
backup still being written is refused, and so is a held one (backup hold); one whose
writer is gone was marked failed when it was read (catalog.backups) and goes like any
other.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from pgharbor import crypto, faultpoint
from pgharbor.access import keyring
from pgharbor.backup.chunkmap import delete_backup_objects
from pgharbor.backup.chunks import ChunkStore
from pgharbor.backup.gc import GcStats, KeysFor, collect, live_chunks, sweep_leftovers
from pgharbor.backup.lease import Lease, LeaseGroup, refuse_root
from pgharbor.catalog.backups import Backup, BackupRepo
from pgharbor.catalog.repo import Catalog, now
from pgharbor.catalog.retention import RetentionRepo
from pgharbor.errors import Busy, Conflict
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import ref_key

__all__ = ["DeleteResult", "delete_backup", "live_chunks"]

log = logging.getLogger(__name__)


@dataclass
class DeleteResult:
    id: str
    cluster: str
    gc: dict[str, GcStats] = field(default_factory=dict)


def _keys(settings: Settings, target: str, cluster: str) -> crypto.Keyring | None:
    return keyring(settings, cluster, target)


def _refuse_running(b: Backup) -> None:
    if b.status == "running":
        raise Busy(
            f"backup {b.id} of {b.cluster} is being written (pid {b.pid} on {b.host or '?'}): "
            "it cannot be deleted while it runs",
            hint="wait for it to end; a writer that is gone is noticed by the next command",
        )


def _refuse_held(catalog: Catalog, b: Backup) -> None:
    hold = RetentionRepo(catalog).held(b.id, now())
    if hold is not None:
        raise Conflict(
            f"backup {b.id} of {b.cluster} is held ({hold.reason}): it cannot be deleted",
            hint=f"pgharbor backup release {b.cluster} {b.id}",
        )


def _stores(
    catalog: Catalog, settings: Settings, repo: BackupRepo, backup_id: str
) -> list[tuple[str, Storage]]:
    """(target name, storage) of every target that may hold a copy of the backup."""
    urls = {t.id: t for t in catalog.targets()}
    found = []
    for target_id, name, _status in repo.copies(backup_id):
        target = urls.get(target_id)
        if target is not None:
            found.append((name, open_storage(target.url, settings.target_options(name))))
    return found


def delete_backup(
    catalog: Catalog, settings: Settings, cluster_name: str, backup_id: str
) -> DeleteResult:
    refuse_root("backup delete")
    repo = BackupRepo(catalog)
    cluster = catalog.cluster(cluster_name)
    backup = repo.get(cluster_name, backup_id)  # a dead writer's backup is failed by now
    _refuse_running(backup)
    _refuse_held(catalog, backup)
    stores = _stores(catalog, settings, repo, backup.id)
    owner = f"backup delete {cluster.name}/{backup.id}"
    leases = [Lease(s, "gc", owner) for _, s in stores]
    result = DeleteResult(backup.id, cluster.name)
    with LeaseGroup(leases):  # Busy: nothing was changed
        faultpoint.point("delete.after_lease")
        repo.update(backup.id, status="deleting")
        for i, ((name, storage), lease) in enumerate(zip(stores, leases, strict=True)):
            if i:
                faultpoint.point("delete.between_targets")
            lease.check()
            storage.delete(ref_key(cluster.name, backup.id))
            storage.delete(ref_key(cluster.name, backup.id, running=True))
            delete_backup_objects(storage, cluster.name, backup.id)
            faultpoint.point("delete.after_remove")
            result.gc[name] = _collect(
                storage, lease, functools.partial(_keys, settings, name), repo
            )
            log.info("target %s: %s", name, result.gc[name])
        repo.delete(backup.id)
    return result


def _collect(storage: Storage, lease: Lease, keys_for: KeysFor, repo: BackupRepo) -> GcStats:
    """One target's collection, under its gc lease."""

    def stale(cluster: str, backup_id: str) -> None:
        repo.fail_running(backup_id, f"its writer is gone (leftovers found on {storage.url})")

    leftovers = sweep_leftovers(storage, lease.check, stale)
    live = live_chunks(storage, keys_for)
    store = ChunkStore(storage)
    try:
        faultpoint.point("gc.after_listing")
        stats = collect(store, live, lease.check)
    finally:
        store.close()
        live.close()
    stats.leftovers = leftovers
    return stats
