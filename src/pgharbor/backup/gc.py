"""Garbage collection of one target's chunk store: free exactly the chunks no finished
backup uses. Only ever run under the target's exclusive ``gc`` lease (see backup.lease):
no backup, restore or verification holds the store meanwhile, so

- a ``.running`` ref is what a dead writer left: its partial chunk map (and a manifest
  it may have written before its ref) is removed with it;
- a pack without an index is what a writer or a GC killed between the two left, and an
  index without a pack names chunks that are gone: both are removed;
- a chunk in two packs (a GC killed after rewriting a pack, two backups storing one new
  chunk at once) is kept once;
- a pack's partition markers (``chunks/partitions/CLUSTER/PACK``, see backup.chunks)
  follow it: a rewritten pack is marked for the same clusters before the old one goes,
  and a pack's markers go with it (so do markers of packs that are gone).

Before every destructive step ``guard()`` (the lease's check) confirms the exclusion
still holds; a pack whose index is in the quarantine is never touched. Packs are listed
before indexes: a pack is always written before its index, so a pack that shows up
between the two listings cannot look orphaned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from dataclasses import dataclass

from pgharbor import crypto, faultpoint
from pgharbor.backup.chunkdb import ChunkSet, Location
from pgharbor.backup.chunkmap import delete_backup_objects
from pgharbor.backup.chunks import ChunkStore, names, parse_index
from pgharbor.backup.manifest import BackupManifest
from pgharbor.errors import EncryptionError, IntegrityError, ObjectNotFound, StorageError
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import (
    INDEXES,
    PACKS,
    PARTITIONS,
    QUARANTINE,
    REFS,
    index_key,
    manifest_key,
    pack_key,
    partition_key,
    ref_key,
)

log = logging.getLogger(__name__)

KeysFor = Callable[[str], "crypto.Keyring | None"]  # cluster name -> its keys on this target
Guard = Callable[[], None]  # raises (LeaseLost) when the exclusion no longer holds
Stale = Callable[[str, str], None]  # (cluster, backup id) of a dead writer's leftovers


@dataclass
class GcStats:
    packs_deleted: int = 0
    packs_rewritten: int = 0
    chunks_freed: int = 0
    bytes_freed: int = 0
    orphans: int = 0  # packs without an index, and indexes without a pack, removed
    markers: int = 0  # partition markers of packs that are gone, removed
    leftovers: int = 0  # dead writers' partial backups removed


def _refs(storage: Storage) -> list[tuple[str, str]]:
    """(cluster, ref name) of every ref on the target."""
    found = []
    for obj in storage.list(REFS):
        parts = obj.key.split("/")
        if len(parts) == 4:
            found.append((parts[2], parts[3]))
    return found


def sweep_leftovers(storage: Storage, guard: Guard, on_stale: Stale) -> int:
    """Remove what dead writers left: under the gc lease every ``.running`` ref is
    one. A backup that wrote its final ref too keeps it (and its chunks): only the
    marker goes. Returns how many partial backups were removed."""
    refs = _refs(storage)
    final = set(refs)
    removed = 0
    for cluster, ref in refs:
        if not ref.endswith(".running"):
            continue
        backup_id = ref.removesuffix(".running")
        guard()
        if (cluster, backup_id) not in final:
            delete_backup_objects(storage, cluster, backup_id)
            removed += 1
            log.info("%s: removed the leftovers of backup %s/%s", storage.url, cluster, backup_id)
        storage.delete(ref_key(cluster, backup_id, running=True))
        on_stale(cluster, backup_id)
    return removed


def live_chunks(storage: Storage, keys_for: KeysFor = lambda cluster: None) -> ChunkSet:
    """Chunk ids used by any finished backup (of any cluster) on this target, collected on
    local disk (see chunkdb). Encrypted manifests are read with their cluster's keys; one
    that cannot be read, or a chunk map part that is missing or damaged, stops the
    collection: its chunks would otherwise be freed while in use. ``.running`` refs add
    nothing: no restore can pick an unfinished backup (see sweep_leftovers)."""
    live = ChunkSet()
    try:
        for cluster, ref in _refs(storage):
            if not ref.endswith(".running"):
                _add_backup(live, storage, cluster, ref, keys_for(cluster))
    except BaseException:
        live.close()
        raise
    return live


def _add_backup(
    live: ChunkSet, storage: Storage, cluster: str, backup_id: str, keys: crypto.Keyring | None
) -> None:
    try:
        m = BackupManifest.unseal(storage.get(manifest_key(cluster, backup_id)), keys)
    except ObjectNotFound:
        return  # a manifest deleted just before its ref: nothing to keep
    except EncryptionError as exc:
        raise EncryptionError(
            f"{storage.url}: chunks were not collected: the manifest of backup "
            f"{cluster}/{backup_id} cannot be read: {exc} (run backup delete again once it can)",
            hint=exc.hint,
        ) from None
    try:
        live.add_many(m.chunkmap(storage.get, keys))
    except (StorageError, IntegrityError) as exc:
        raise IntegrityError(
            f"{storage.url}: chunks were not collected: the chunk map of backup "
            f"{cluster}/{backup_id} cannot be read: {exc}"
        ) from None


def partitions(storage: Storage) -> dict[str, list[str]]:
    """pack -> the clusters whose partition markers name it."""
    marks: dict[str, list[str]] = {}
    for obj in storage.list(PARTITIONS):
        parts = obj.key.split("/")
        if len(parts) == 4:
            marks.setdefault(parts[3], []).append(parts[2])
    return marks


def collect(store: ChunkStore, live: Container[bytes], guard: Guard) -> GcStats:
    """Free every chunk not in ``live``: delete dead packs, rewrite mixed ones, remove
    orphans. One pack at a time (live is on disk, see chunkdb): memory does not grow
    with the store. The store's index is not loaded or changed."""
    storage = store.storage
    stats = GcStats()
    packs = names(storage, PACKS)
    indexed = names(storage, INDEXES)
    quarantined = names(storage, QUARANTINE)
    marks = partitions(storage)
    kept = ChunkSet()  # live chunks already kept in a pack gone through
    try:
        for pack in indexed:
            if pack not in packs:
                guard()
                storage.delete(index_key(pack))
                stats.orphans += 1
                continue
            entries = _entries(store, pack, guard)
            if entries is not None:
                _collect_pack(store, pack, entries, live, kept, guard, stats, marks)
        for pack, size in packs.items():
            if pack not in indexed and pack not in quarantined:
                guard()
                storage.delete(pack_key(pack))
                stats.orphans += 1
                stats.bytes_freed += size
                log.info("%s: pack %s had no index: removed", storage.url, pack)
        for pack, clusters in marks.items():  # markers of packs that are gone
            if pack not in packs or (pack not in indexed and pack not in quarantined):
                guard()
                _unmark(storage, pack, clusters, stats)
    finally:
        kept.close()
    return stats


def _unmark(storage: Storage, pack: str, clusters: list[str], stats: GcStats) -> None:
    for cluster in clusters:
        storage.delete(partition_key(cluster, pack))
        stats.markers += 1


def _entries(store: ChunkStore, pack: str, guard: Guard) -> list[tuple[bytes, Location]] | None:
    """The pack's index; None when it vanished or is corrupt (then quarantined)."""
    try:
        blob = store.storage.get(index_key(pack))
    except ObjectNotFound:
        return None
    try:
        return parse_index(pack, blob)
    except IntegrityError as exc:
        guard()
        store.quarantine(pack, blob, exc.message)
        return None


def _collect_pack(
    store: ChunkStore,
    pack: str,
    entries: list[tuple[bytes, Location]],
    live: Container[bytes],
    kept: ChunkSet,
    guard: Guard,
    stats: GcStats,
    marks: dict[str, list[str]],
) -> None:
    keep = [(c, loc) for c, loc in entries if c in live and c not in kept]
    kept.add_many(c for c, _ in keep)
    dead = len(entries) - len(keep)
    if not dead:
        return
    guard()
    clusters = marks.pop(pack, [])
    if keep:
        new = store.repack(pack, keep)
        for cluster in clusters:  # the new pack is in the partitions the old one was
            store.storage.put(partition_key(cluster, new), new.encode())
        faultpoint.point("gc.after_rewrite")  # the same chunks in two packs
        stats.packs_rewritten += 1
    else:
        stats.packs_deleted += 1
    guard()
    store.storage.delete(index_key(pack))
    store.storage.delete(pack_key(pack))
    for cluster in clusters:
        store.storage.delete(partition_key(cluster, pack))
    stats.chunks_freed += dead
    kept_ids = {c for c, _ in keep}
    stats.bytes_freed += sum(loc.length for c, loc in entries if c not in kept_ids)
    log.info("pack %s: %d of %d chunks freed", pack, dead, len(entries))
