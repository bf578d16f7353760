"""Where a restore reads from: the backup's manifest and chunks, from the placements
that hold it in priority order, falling back per chunk when one is missing or corrupt."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from pgharbor.backup.chunks import ChunkCodec, ChunkStore
from pgharbor.backup.manifest import BackupManifest, manifest_key
from pgharbor.errors import IntegrityError, PgharborError, StorageError
from pgharbor.storage.base import Storage

log = logging.getLogger(__name__)


@dataclass
class _Source:
    name: str
    store: ChunkStore
    loaded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ready(self) -> ChunkStore:
        """The store with its index loaded (once, even when many threads ask at once)."""
        with self.lock:
            if not self.loaded:
                self.store.load()
                self.loaded = True
        return self.store


class BackupSource:
    def __init__(
        self, storages: list[tuple[str, Storage]], codec: ChunkCodec | None = None
    ) -> None:
        if not storages:
            raise PgharborError("no target holds this backup")
        self.sources = [_Source(n, ChunkStore(s, codec)) for n, s in storages]
        self.fallbacks: list[str] = []

    def manifest(self, cluster: str, backup_id: str) -> BackupManifest:
        problems = []
        for src in self.sources:
            try:
                return BackupManifest.unseal(
                    src.store.storage.get(manifest_key(cluster, backup_id)), src.store.codec.keys
                )
            except (StorageError, IntegrityError) as exc:
                problems.append(f"{src.name}: {exc}")
        raise PgharborError(f"backup {backup_id}: no readable manifest: " + "; ".join(problems))

    def chunk(self, cid: bytes, path: str) -> bytes:
        problems = []
        for src in self.sources:
            try:
                raw = src.ready().read(cid)
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
