"""backup delete: remove a backup and free exactly the chunks no other backup uses."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pgharbor import crypto
from pgharbor.backup.chunkdb import ChunkSet
from pgharbor.backup.chunkmap import delete_backup_objects
from pgharbor.backup.chunks import ChunkStore, GcStats, ref_key
from pgharbor.backup.manifest import BackupManifest, manifest_key
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.errors import (
    Conflict,
    EncryptionError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
)
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage
from pgharbor.storage.factory import open_storage

log = logging.getLogger(__name__)


@dataclass
class DeleteResult:
    id: str
    cluster: str
    gc: dict[str, GcStats] = field(default_factory=dict)


KeysFor = Callable[[str], "crypto.Keyring | None"]  # cluster name -> its keys on this target


def live_chunks(storage: Storage, keys_for: KeysFor = lambda cluster: None) -> ChunkSet:
    """Chunk ids used by any finished backup (of any cluster) on this target, collected on
    local disk (see chunkdb). Encrypted manifests are read with their cluster's keys; one
    that cannot be read, or a chunk map part that is missing or damaged, stops the
    collection: its chunks would otherwise be freed while in use."""
    live = ChunkSet()
    running = []
    for obj in storage.list("chunks/refs/"):
        parts = obj.key.split("/")
        cluster, ref = parts[2], parts[3]
        if ref.endswith(".running"):
            running.append(f"{cluster}/{ref.removesuffix('.running')}")
            continue
        keys = keys_for(cluster)
        try:
            m = BackupManifest.unseal(storage.get(manifest_key(cluster, ref)), keys)
        except ObjectNotFound:
            continue  # a manifest deleted just before its ref: nothing to keep
        except EncryptionError as exc:
            raise EncryptionError(
                f"{storage.url}: chunks were not collected: the manifest of backup "
                f"{cluster}/{ref} cannot be read: {exc} (run backup delete again once it can)",
                hint=exc.hint,
            ) from None
        try:
            live.add_many(m.chunkmap(storage.get, keys))
        except (StorageError, IntegrityError) as exc:
            raise IntegrityError(
                f"{storage.url}: chunks were not collected: the chunk map of backup "
                f"{cluster}/{ref} cannot be read: {exc}"
            ) from None
    if running:
        raise Conflict(
            f"{storage.url}: backup(s) {', '.join(running)} are being written; chunks were "
            "not collected (run backup delete again when they are done)"
        )
    return live


def _keys(settings: Settings, target: str, cluster: str) -> crypto.Keyring | None:
    return crypto.keyring(settings, cluster, target)


def delete_backup(
    catalog: Catalog, settings: Settings, cluster_name: str, backup_id: str
) -> DeleteResult:
    repo = BackupRepo(catalog)
    cluster = catalog.cluster(cluster_name)
    backup = repo.get(cluster_name, backup_id)
    result = DeleteResult(backup.id, cluster.name)
    urls = {t.id: t for t in catalog.targets()}
    copies = repo.copies(backup.id)
    for target_id, _name, _status in copies:
        others = [b for b, _ in repo.running_on_target(target_id) if b != backup.id]
        if others:
            raise Conflict(
                f"backup(s) {', '.join(others)} are running on target {_name}; try again later"
            )
    repo.update(backup.id, status="deleting")
    for target_id, name, _status in copies:
        target = urls.get(target_id)
        if target is None:
            continue
        storage = open_storage(target.url, settings.target_options(name))
        storage.delete(ref_key(cluster.name, backup.id))
        storage.delete(ref_key(cluster.name, backup.id, running=True))
        delete_backup_objects(storage, cluster.name, backup.id)
        live = live_chunks(storage, functools.partial(_keys, settings, name))
        store = ChunkStore(storage)
        try:
            result.gc[name] = store.gc(live)
        finally:
            store.close()
            live.close()
        log.info("target %s: %s", name, result.gc[name])
    repo.delete(backup.id)
    return result
