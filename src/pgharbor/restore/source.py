"""Where a restore reads from: the backup's manifest, chunk map and chunks, from the
placements that hold it in priority order, falling back per chunk when one is missing or
corrupt. Chunks are read in runs: neighbours in one pack come in one ranged read."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgharbor import envelope
from pgharbor.backup.chunkdb import Location
from pgharbor.backup.chunkmap import ChunkMapReader
from pgharbor.backup.chunks import ChunkCodec, ChunkStore
from pgharbor.backup.manifest import BackupManifest
from pgharbor.errors import EncryptionError, IntegrityError, PgharborError, StorageError
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import manifest_key, pack_key

if TYPE_CHECKING:
    from pgharbor.crypto import Keyring

log = logging.getLogger(__name__)

# A run: one ranged read of a pack. Chunks at most MAX_GAP apart share one (reading the
# gap costs less than another request), up to MAX_RUN bytes: the memory a worker holds.
MAX_GAP = 256 * 1024
MAX_RUN = 4 * 1024 * 1024


@dataclass
class _Source:
    name: str
    store: ChunkStore
    partition: str | None = None  # the backup's cluster: its packs' indexes come first
    loaded: bool = False
    broken: str | None = None  # why its index could not be loaded
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ready(self, whole: bool = False) -> ChunkStore:
        """The store with its index loaded (once, even when many threads ask at once):
        the indexes of the cluster's partition, or with ``whole`` every index (for a
        chunk no partition holds: a backup written before partitions). An index that
        cannot be read is skipped with a warning (its chunks are read from another
        placement, chunk by chunk): only a placement that cannot be listed or read at
        all is broken."""
        with self.lock:
            if self.broken is not None:
                raise StorageError(self.broken)
            try:
                if not self.loaded:  # a restore changes no target: no quarantine
                    self.store.load(quarantine=False, partition=self.partition)
                    self.loaded = True
                if whole:
                    self.store.load_rest(quarantine=False)
            except (StorageError, IntegrityError) as exc:
                self.broken = str(exc)
                raise
        return self.store


@dataclass
class Wanted:
    """A chunk to read, and what to tell when it cannot be."""

    cid: bytes
    path: str


@dataclass
class Run:
    """Chunks of one pack of one source, read with one ranged request."""

    source: _Source
    pack: str
    items: list[tuple[Wanted, Location]]

    @property
    def start(self) -> int:
        return self.items[0][1].offset

    @property
    def end(self) -> int:
        return max(loc.offset + loc.length for _, loc in self.items)


class BackupSource:
    def __init__(
        self,
        storages: list[tuple[str, Storage]],
        codec: ChunkCodec | None = None,
        partition: str | None = None,
    ) -> None:
        if not storages:
            raise PgharborError("no target holds this backup")
        self.codec = codec
        self.sources = [_Source(n, ChunkStore(s, codec), partition) for n, s in storages]
        self.fallbacks: list[str] = []

    def close(self) -> None:
        for src in self.sources:
            src.store.close()

    def manifest(self, cluster: str, backup_id: str) -> BackupManifest:
        """The backup's manifest from the first placement with a good one: whole, sealed as
        the keys require, and this backup's."""
        problems = []
        for src in self.sources:
            try:
                blob = src.store.storage.get(manifest_key(cluster, backup_id))
                m = _unseal_manifest(blob, src.store.codec.keys)
                if m.id != backup_id or m.cluster != cluster:
                    raise IntegrityError(f"it is the manifest of {m.cluster}/{m.id}")
                return m
            except (StorageError, EncryptionError) as exc:
                problems.append(f"{src.name}: {exc}")
        raise IntegrityError(f"backup {backup_id}: no good manifest: " + "; ".join(problems))

    def chunkmap(self, m: BackupManifest) -> ChunkMapReader:
        """The backup's chunk ids; each part from the first placement that has it whole,
        sealed as the keys require, and named as this backup's part (a part of another
        backup, or another part, is refused). The last part is read now: the manifest's
        chunk count must match the map before anything is written."""
        keys = self.sources[0].store.codec.keys

        def fetch(key: str) -> bytes:
            want = f"{m.id}/{key.rsplit('/', 1)[1]}"
            problems = []
            for src in self.sources:
                try:
                    blob = src.store.storage.get(key)
                    meta, _ = envelope.unseal(blob, keys)  # whole and ours, or the next one
                    if (meta.kind, meta.name) != ("backup-chunkmap", want) or (
                        meta.system_identifier != m.system_identifier
                    ):
                        raise IntegrityError(f"it holds {meta.kind} {meta.name}, not part {want}")
                    return blob
                except (StorageError, EncryptionError) as exc:
                    problems.append(f"{src.name}: {exc}")
            raise IntegrityError(f"{key}: no good copy on any target: " + "; ".join(problems))

        reader = m.chunkmap(fetch, keys)
        if m.chunk_count:
            reader.ids(m.chunk_count - 1, 1)
        return reader

    def runs(self, wanted: list[Wanted]) -> tuple[list[Run], list[Wanted]]:
        """Group chunks into runs on the first source whose index has them (the
        partitions' indexes first, then all of them); the chunks no index has (second
        list) are read one by one, with fallback. Looked up in batches."""
        by_pack: dict[tuple[int, str], list[tuple[Wanted, Location]]] = {}
        todo = wanted
        for whole in (False, True):
            for i, src in enumerate(self.sources):
                if not todo:
                    break
                try:
                    found = src.ready(whole).index.get_many([w.cid for w in todo])
                except (StorageError, IntegrityError):
                    continue
                rest = []
                for w in todo:
                    loc = found.get(w.cid)
                    if loc is None:
                        rest.append(w)
                    else:
                        by_pack.setdefault((i, loc.pack), []).append((w, loc))
                todo = rest
        runs: list[Run] = []
        for (i, pack), items in by_pack.items():
            items.sort(key=lambda it: it[1].offset)
            run: Run | None = None
            end = 0
            for item in items:
                loc = item[1]
                if (
                    run is None
                    or loc.offset - end > MAX_GAP
                    or loc.offset + loc.length - run.start > MAX_RUN
                ):
                    if run is not None:
                        runs.append(run)
                    run = Run(self.sources[i], pack, [item])
                    end = loc.offset + loc.length
                else:
                    run.items.append(item)
                    end = max(end, loc.offset + loc.length)
            assert run is not None
            runs.append(run)
        return runs, todo

    def _locate(self, cid: bytes, whole: bool) -> tuple[int, Location] | None:
        """The first source (by priority) whose index has the chunk: among the partitions'
        indexes, or with ``whole`` among all of them."""
        for i, src in enumerate(self.sources):
            try:
                loc = src.ready(whole).index.get(cid)
            except (StorageError, IntegrityError):
                continue
            if loc is not None:
                return i, loc
        return None

    def read_run(self, run: Run) -> Iterator[tuple[Wanted, bytes]]:
        """Every chunk of the run, verified, one at a time (decoded, a run can be many times
        its stored size: the caller writes each before the next is decoded). A chunk that
        is bad there comes from elsewhere."""
        store = run.source.store
        try:
            data = memoryview(
                store.storage.get_range(pack_key(run.pack), run.start, run.end - run.start)
            )
        except (StorageError, IntegrityError) as exc:
            log.warning("%s: pack %s: %s", run.source.name, run.pack, exc)
            data = memoryview(b"")
        for w, loc in run.items:
            at = loc.offset - run.start
            try:
                raw = store.unpack(w.cid, loc, data[at : at + loc.length])
            except (StorageError, IntegrityError):
                raw = self.chunk(w.cid, w.path)
            yield w, raw

    def chunk(self, cid: bytes, path: str) -> bytes:
        problems = []
        for src in self.sources:
            try:
                store = src.ready()
                if store.index.get(cid) is None:  # not in the partition: every index
                    store = src.ready(whole=True)
                raw = store.read(cid)
            except (StorageError, IntegrityError) as exc:
                problems.append(f"{src.name}: {exc}")
                continue
            if problems:
                note = f"{path}: chunk {cid.hex()[:16]}… read from {src.name} ({problems[0]})"
                log.warning(note)
                self.fallbacks.append(note)
            return raw
        raise IntegrityError(
            f"{path}: no good copy of chunk {cid.hex()[:16]}… on any target: " + "; ".join(problems)
        )


def _unseal_manifest(blob: bytes, keys: Keyring | None) -> BackupManifest:
    """BackupManifest.unseal, with a malformed document (fields of the wrong shape) an
    IntegrityError like any other damage."""
    try:
        return BackupManifest.unseal(blob, keys)
    except (TypeError, KeyError, ValueError, AttributeError, RecursionError) as exc:
        raise IntegrityError(f"manifest is malformed ({type(exc).__name__})") from None
