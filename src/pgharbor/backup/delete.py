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

__all__ = ["DeleteResult", "delete_backup", "delete_backups", "live_chunks"]

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
    catalog: Catalog, settings: Settings, repo: BackupRepo, backup_ids: list[str]
) -> list[tuple[str, Storage, list[str]]]:
    """(target name, storage, ids of the backups it may hold) of every target that may
    hold a copy of one of the backups, in a stable order."""
    urls = {t.id: t for t in catalog.targets()}
    held: dict[str, list[str]] = {}
    for backup_id in backup_ids:
        for target_id, _name, _status in repo.copies(backup_id):
            if target_id in urls:
                held.setdefault(target_id, []).append(backup_id)
    found = []
    for target_id, ids in sorted(held.items(), key=lambda kv: urls[kv[0]].name):
        t = urls[target_id]
        found.append((t.name, open_storage(t.url, settings.target_options(t.name)), ids))
    return found


def delete_backup(
    catalog: Catalog, settings: Settings, cluster_name: str, backup_id: str
) -> DeleteResult:
    return DeleteResult(
        backup_id, cluster_name, delete_backups(catalog, settings, cluster_name, [backup_id])
    )


def delete_backups(
    catalog: Catalog, settings: Settings, cluster_name: str, backup_ids: list[str]
) -> dict[str, GcStats]:
    """Delete backups of one cluster under one set of ``gc`` leases (all their targets,
    all or none), then collect each target's chunk store once. Returns the GC per target."""
    refuse_root("backup delete")
    repo = BackupRepo(catalog)
    cluster = catalog.cluster(cluster_name)
    chosen = [repo.get(cluster_name, i) for i in backup_ids]  # dead writers' are failed now
    for backup in chosen:
        _refuse_running(backup)
        _refuse_held(catalog, backup)
    ids = [b.id for b in chosen]
    stores = _stores(catalog, settings, repo, ids)
    what = ids[0] if len(ids) == 1 else f"{len(ids)} backups"
    leases = [Lease(s, "gc", f"backup delete {cluster.name}/{what}") for _, s, _ in stores]
    gc: dict[str, GcStats] = {}
    with LeaseGroup(leases):  # Busy: nothing was changed
        faultpoint.point("delete.after_lease")
        for backup_id in ids:
            repo.update(backup_id, status="deleting")
        for i, ((name, storage, here), lease) in enumerate(zip(stores, leases, strict=True)):
            if i:
                faultpoint.point("delete.between_targets")
            lease.check()
            for backup_id in here:
                storage.delete(ref_key(cluster.name, backup_id))
                storage.delete(ref_key(cluster.name, backup_id, running=True))
                delete_backup_objects(storage, cluster.name, backup_id)
            faultpoint.point("delete.after_remove")
            gc[name] = _collect(storage, lease, functools.partial(_keys, settings, name), repo)
            log.info("target %s: %s", name, gc[name])
        for backup_id in ids:
            repo.delete(backup_id)
    return gc


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
