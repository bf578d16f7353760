"""backup verify: read the manifest, the chunk map and every chunk of one backup on each
placement that holds it, each placement on its own (no fallback), and check them
(checksums, or authentication when encrypted), so a flipped byte or a lost pack is
found before a restore needs that copy. Under a ``verify`` lease per target: no GC
changes the store while it is read. Memory stays flat: one chunk map part and one batch
of chunk locations at a time, the chunks already checked in a set on local disk."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgharbor.access import chunk_codec
from pgharbor.backup.chunkdb import ChunkSet, Location
from pgharbor.backup.chunkmap import PART_IDS, chunks_of
from pgharbor.backup.chunks import ChunkCodec, ChunkStore
from pgharbor.backup.lease import Lease, refuse_root
from pgharbor.backup.manifest import BackupManifest, FileEntry
from pgharbor.catalog.backups import Backup, BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.errors import (
    Conflict,
    EncryptionError,
    IntegrityError,
    NotFound,
    PgharborError,
    StorageError,
    StorageUnavailable,
)
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import manifest_key, pack_key

MAX_NAMED = 5  # bad chunks named per placement
BATCH = 4096  # chunk ids located and read per round
MAX_GAP = 256 * 1024  # neighbours this close in a pack are read with one request
MAX_SPAN = 4 * 1024 * 1024  # at most this much per request
_UNREADABLE = (IntegrityError, EncryptionError)  # a damaged or foreign object, not the target


@dataclass
class BadChunk:
    path: str
    chunk: int  # its number in the file (offset = chunk * chunk size)
    id: str  # the chunk id's first 16 hex digits
    problem: str


@dataclass
class PlacementCheck:
    target: str
    status: str = "ok"  # ok | incomplete | unavailable
    chunks: int = 0  # distinct chunks of the backup checked
    ok: int = 0
    missing: int = 0
    corrupt: int = 0
    unchecked: int = 0  # chunk ids in chunk map parts that cannot be read
    problems: list[str] = field(default_factory=list)  # manifest, chunk map, the target
    bad: list[BadChunk] = field(default_factory=list)  # the first few bad chunks
    notes: list[str] = field(default_factory=list)  # the store's unusable indexes

    def bad_chunk(self, where: tuple[str, int], cid: bytes, missing: bool, why: str) -> None:
        if missing:
            self.missing += 1
        else:
            self.corrupt += 1
        if len(self.bad) < MAX_NAMED:
            kind = "missing" if missing else "corrupt"
            self.bad.append(BadChunk(where[0], where[1], cid.hex()[:16], f"{kind}: {why}"))

    def settle(self) -> None:
        if self.status == "ok" and (self.problems or self.missing or self.corrupt):
            self.status = "incomplete"


@dataclass
class VerifyResult:
    cluster: str
    backup_id: str
    placements: list[PlacementCheck]
    ok: bool = False


Where = tuple[str, int]  # (file path, chunk number in the file)


class _Placement:
    """One placement's copy of the backup, checked on its own."""

    def __init__(
        self, name: str, storage: Storage, codec: ChunkCodec, b: Backup, sysid: str
    ) -> None:
        self.storage, self.codec, self.backup, self.sysid = storage, codec, b, sysid
        self.check = PlacementCheck(name)

    def run(self) -> PlacementCheck:
        owner = f"backup verify {self.backup.cluster}/{self.backup.id}"
        try:
            with Lease(self.storage, "verify", owner):
                self._verify()
        except PgharborError as exc:  # unreachable, or a GC holds the store
            self.check.status = "unavailable"
            self.check.problems.append(exc.message)
        self.check.settle()
        return self.check

    def _verify(self) -> None:
        b = self.backup
        try:
            blob = self.storage.get(manifest_key(b.cluster, b.id))
            m = BackupManifest.unseal(blob, self.codec.keys)
        except (*_UNREADABLE, StorageError) as exc:
            if isinstance(exc, StorageUnavailable):
                raise
            self.check.problems.append(f"manifest: {exc.message}")
            return
        if m.id != b.id or m.system_identifier != self.sysid:
            self.check.problems.append("manifest: it is not this backup's")
            return
        store, seen = ChunkStore(self.storage, self.codec), ChunkSet()
        try:
            # the cluster's own packs first; every index only if one of its chunks is
            # elsewhere (a backup from before partitions)
            store.load(quarantine=False, dangling=True, partition=b.cluster)
            self.check.notes += store.problems
            self._chunk_map(m, store, seen)
        finally:
            store.close()
            seen.close()

    def _chunk_map(self, m: BackupManifest, store: ChunkStore, seen: ChunkSet) -> None:
        files = sorted(
            (f.first_chunk, chunks_of(f.size, m.chunk_size), path)
            for path, f in _files(m)
            if f.type == "f" and f.size > 0
        )
        reader = m.chunkmap(self.storage.get, self.codec.keys)
        batch: list[tuple[bytes, Where]] = []
        at = 0  # files[at] is the file of the current position, or the next one
        for part in range(chunks_of(m.chunk_count, PART_IDS)):
            first = part * PART_IDS
            count = min(PART_IDS, m.chunk_count - first)
            try:
                ids = reader.ids(first, count)
            except (*_UNREADABLE, StorageError) as exc:
                if isinstance(exc, StorageUnavailable):
                    raise
                self.check.problems.append(f"chunk map part {part:06d}: {exc.message}")
                self.check.unchecked += count
                continue
            for j, cid in enumerate(ids):
                pos = first + j
                while at < len(files) and pos >= files[at][0] + files[at][1]:
                    at += 1
                inside = at < len(files) and pos >= files[at][0]
                batch.append((cid, (files[at][2], pos - files[at][0]) if inside else ("?", pos)))
                if len(batch) >= BATCH:
                    self._batch(batch, store, seen)
                    batch = []
        self._batch(batch, store, seen)

    def _batch(self, batch: list[tuple[bytes, Where]], store: ChunkStore, seen: ChunkSet) -> None:
        todo: dict[bytes, Where] = {}
        for cid, where in batch:
            if cid not in todo and cid not in seen:
                todo[cid] = where
        seen.add_many(todo)
        by_pack: dict[str, list[tuple[Location, bytes]]] = {}
        for cid, where in todo.items():
            self.check.chunks += 1
            loc = store.index.get(cid)
            if loc is None and not store.whole:
                store.load_rest(quarantine=False, dangling=True)
                loc = store.index.get(cid)
            if loc is None:
                self.check.bad_chunk(where, cid, True, "in no readable chunk index")
            else:
                by_pack.setdefault(loc.pack, []).append((loc, cid))
        for pack, items in by_pack.items():
            items.sort(key=lambda it: it[0].offset)
            for span in _spans(items):
                self._span(pack, span, store, todo)

    def _span(
        self,
        pack: str,
        span: list[tuple[Location, bytes]],
        store: ChunkStore,
        where: dict[bytes, Where],
    ) -> None:
        start = span[0][0].offset
        end = max(loc.offset + loc.length for loc, _ in span)
        try:
            data = memoryview(self.storage.get_range(pack_key(pack), start, end - start))
        except StorageUnavailable:
            raise
        except StorageError as exc:  # the pack is gone or unreadable
            for _, cid in span:
                self.check.bad_chunk(where[cid], cid, True, f"pack {pack}: {self._why(exc)}")
            return
        for loc, cid in span:
            at = loc.offset - start
            try:
                store.unpack(cid, loc, data[at : at + loc.length])
            except _UNREADABLE as exc:
                self.check.bad_chunk(where[cid], cid, False, f"pack {pack}: {self._why(exc)}")
            else:
                self.check.ok += 1

    def _why(self, exc: PgharborError) -> str:
        """The problem without the target's URL (the report names the placement)."""
        return exc.message.removeprefix(f"{self.storage.url}: ")


def _files(m: BackupManifest) -> list[tuple[str, FileEntry]]:
    found = [(f.path, f) for f in m.files]
    for t in m.tablespaces:
        found += [(f"pg_tblspc/{t.oid}/{f.path}", f) for f in t.files]
    return found


def _spans(items: list[tuple[Location, bytes]]) -> list[list[tuple[Location, bytes]]]:
    """Neighbouring chunks of one pack (sorted by offset), grouped for one read each."""
    spans: list[list[tuple[Location, bytes]]] = []
    head = end = 0
    for item in items:
        loc = item[0]
        if spans and loc.offset - end <= MAX_GAP and loc.offset + loc.length - head <= MAX_SPAN:
            spans[-1].append(item)
            end = max(end, loc.offset + loc.length)
        else:
            spans.append([item])
            head, end = loc.offset, loc.offset + loc.length
    return spans


def verify_backup(
    catalog: Catalog, settings: Settings, cluster_name: str, backup_id: str
) -> VerifyResult:
    refuse_root("backup verify")
    repo = BackupRepo(catalog)
    cluster = catalog.cluster(cluster_name)
    b = repo.get(cluster_name, backup_id)
    if b.status != "ok":
        raise Conflict(f"backup {b.id} is {b.status}: only ok backups can be verified")
    urls = {t.id: t for t in catalog.targets()}
    checks = []
    for target_id, name, status in sorted(repo.copies(b.id), key=lambda c: c[1]):
        target = urls.get(target_id)
        if status != "ok" or target is None:
            continue
        storage = open_storage(target.url, settings.target_options(name))
        codec = chunk_codec(settings, cluster.name, [name], writing=False)
        checks.append(_Placement(name, storage, codec, b, cluster.system_identifier).run())
    if not checks:
        raise NotFound(f"backup {b.id} has no copy on any target of this catalog")
    return VerifyResult(cluster.name, b.id, checks, all(c.status == "ok" for c in checks))
