"""A backup's chunk ids, in the order its files were stored, beside its manifest:

    <cluster>/backups/<id>/chunkmap/<NNNNNN>    part N: up to PART_IDS ids, 32 bytes each

File k of the manifest covers ids ``first_chunk .. first_chunk + ceil(size / chunk_size)``.
Kept out of the manifest so neither a backup nor a restore nor a garbage collection ever
holds every chunk id in memory: a part (2 MiB, 4 GiB of data) is the unit they hold.
Each part is an envelope (checksummed; encrypted with the manifest's key when the
cluster has one), written before the manifest: a manifest never names missing parts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pgharbor import envelope
from pgharbor.errors import IntegrityError
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import backup_prefix, manifest_key, part_key

if TYPE_CHECKING:
    from pgharbor.crypto import Keyring

PART_IDS = 65536
ID_BYTES = 32


def delete_backup_objects(storage: Storage, cluster: str, backup_id: str) -> None:
    """Remove a backup's manifest and chunk map from a target (its chunks stay: GC)."""
    prefix, manifest = backup_prefix(cluster, backup_id), manifest_key(cluster, backup_id)
    storage.delete(manifest)  # first: a backup without its manifest is never picked
    for obj in list(storage.list(prefix)):
        if obj.key != manifest:
            storage.delete(obj.key)


def chunks_of(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


class Identity:
    """Whose chunk map: what each part's envelope header says."""

    def __init__(self, cluster: str, cluster_id: str, system_identifier: str, backup_id: str):
        self.cluster, self.cluster_id = cluster, cluster_id
        self.system_identifier, self.backup_id = system_identifier, backup_id


class ChunkMapWriter:
    """Collects ids in order; every full part is stored at once on all the storages."""

    def __init__(self, storages: list[Storage], who: Identity, keys: Keyring | None = None) -> None:
        self.storages, self.who, self.keys = storages, who, keys
        self.count = self.parts = 0
        self.stored = 0  # bytes stored per storage
        self._buf = bytearray()

    def append(self, cid: bytes) -> int:
        """Add the next id; returns its position."""
        if len(cid) != ID_BYTES:
            raise ValueError(f"chunk id of {len(cid)} bytes")
        self._buf += cid
        self.count += 1
        if len(self._buf) >= PART_IDS * ID_BYTES:
            self._store()
        return self.count - 1

    def _store(self) -> None:
        data = bytes(self._buf)
        meta = envelope.Meta(
            kind="backup-chunkmap",
            name=f"{self.who.backup_id}/{self.parts:06d}",
            cluster=self.who.cluster,
            cluster_id=self.who.cluster_id,
            system_identifier=self.who.system_identifier,
            size=len(data),
            sha256=envelope.sha256(data),
        )
        blob = envelope.seal(meta, data, self.keys)
        for s in self.storages:
            s.put(part_key(self.who.cluster, self.who.backup_id, self.parts), blob)
        self.parts += 1
        self.stored += len(blob)
        self._buf.clear()

    def close(self) -> None:
        """Store the last, partial part."""
        if self._buf:
            self._store()


class ChunkMapReader:
    """Random access to a backup's ids, holding one part at a time. ``fetch(key)`` returns
    a stored part (a restore passes one that falls back across placements)."""

    def __init__(
        self,
        fetch: Callable[[str], bytes],
        cluster: str,
        backup_id: str,
        count: int,
        keys: Keyring | None = None,
    ) -> None:
        self.fetch, self.cluster, self.backup_id = fetch, cluster, backup_id
        self.count, self.keys = count, keys
        self._part = -1
        self._ids = b""

    def _load(self, n: int) -> bytes:
        if n != self._part:
            key = part_key(self.cluster, self.backup_id, n)
            meta, data = envelope.unseal(self.fetch(key), self.keys)
            expected = min(PART_IDS, self.count - n * PART_IDS) * ID_BYTES
            if meta.kind != "backup-chunkmap" or len(data) != expected:
                raise IntegrityError(f"{key}: not the chunk map part this backup needs")
            self._part, self._ids = n, data
        return self._ids

    def ids(self, first: int, count: int) -> list[bytes]:
        """Ids first .. first + count - 1."""
        if first < 0 or count < 0 or first + count > self.count:
            raise IntegrityError(
                f"backup {self.backup_id}: chunk map has {self.count} ids, "
                f"not {first}..{first + count}"
            )
        out: list[bytes] = []
        i = first
        while i < first + count:
            n, at = divmod(i, PART_IDS)
            part = self._load(n)
            take = min(first + count - i, PART_IDS - at)
            out += [
                part[j : j + ID_BYTES]
                for j in range(at * ID_BYTES, (at + take) * ID_BYTES, ID_BYTES)
            ]
            i += take
        return out

    def __iter__(self) -> Iterator[bytes]:
        for n in range(chunks_of(self.count, PART_IDS)):
            part = self._load(n)
            yield from (part[j : j + ID_BYTES] for j in range(0, len(part), ID_BYTES))
