"""A content-addressed chunk store on one target, shared by every cluster on it.

    chunks/packs/<id[:2]>/<id>   a pack: many encoded chunks back to back
    chunks/index/<id>            the pack's index: chunk id -> (offset, length, size)
    chunks/refs/<cluster>/<backup>[.running]   which backups use the store (for GC)

A chunk's id is the SHA-256 of its raw bytes (keyed when encrypted), so a chunk already
present, from an earlier backup or another cluster, is never stored twice. Packs keep an
object store from holding millions of tiny objects; a pack is written (durably) before
its index, so an indexed chunk is always readable. Garbage collection deletes packs with
no live chunk and rewrites packs with some, so exactly the unused chunks are freed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from pgharbor.errors import IntegrityError, ObjectNotFound, StorageError
from pgharbor.storage.base import Storage

log = logging.getLogger(__name__)

PACK_SIZE = 16 * 1024 * 1024
INDEX_FORMAT = "pgharbor-chunk-index/1"
_NONE, _ZSTD = 0, 1


@dataclass(frozen=True)
class Location:
    pack: str
    offset: int
    length: int
    size: int  # raw size


class ChunkCodec:
    """How chunks are named and encoded: SHA-256 ids, zstd (or no) compression."""

    def __init__(self, compression: str = "zstd", level: int = 3) -> None:
        self.compression, self.level = compression, level

    def chunk_id(self, raw: bytes | memoryview) -> bytes:
        return hashlib.sha256(raw).digest()

    def encode(self, raw: bytes | memoryview) -> bytes:
        if self.compression == "zstd":
            import zstandard

            data = zstandard.ZstdCompressor(level=self.level).compress(raw)
            if len(data) < len(raw):
                return bytes([_ZSTD]) + data
        return bytes([_NONE]) + bytes(raw)

    def decode(self, blob: bytes, size: int) -> bytes:
        kind, payload = blob[:1], blob[1:]
        if kind == bytes([_NONE]):
            return payload
        if kind == bytes([_ZSTD]):
            import zstandard

            try:
                return zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"chunk does not decompress: {exc}") from None
        raise IntegrityError("chunk has an unknown encoding")


def pack_key(pack: str) -> str:
    return f"chunks/packs/{pack[:2]}/{pack}"


def index_key(pack: str) -> str:
    return f"chunks/index/{pack}"


def ref_key(cluster: str, backup_id: str, running: bool = False) -> str:
    return f"chunks/refs/{cluster}/{backup_id}" + (".running" if running else "")


@dataclass
class GcStats:
    packs_deleted: int = 0
    packs_rewritten: int = 0
    chunks_freed: int = 0
    bytes_freed: int = 0


@dataclass
class _OpenPack:
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    parts: list[bytes] = field(default_factory=list)
    entries: list[tuple[bytes, int, int, int]] = field(default_factory=list)
    size: int = 0


class ChunkStore:
    def __init__(
        self, storage: Storage, codec: ChunkCodec | None = None, *, pack_size: int = PACK_SIZE
    ) -> None:
        self.storage = storage
        self.codec = codec or ChunkCodec()
        self.pack_size = pack_size
        self.index: dict[bytes, Location] = {}
        self._open = _OpenPack()
        self.new_bytes = 0
        self.new_chunks = 0

    # -- index ---------------------------------------------------------------
    def load(self) -> None:
        self.index.clear()
        for obj in self.storage.list("chunks/index/"):
            pack = obj.key.rsplit("/", 1)[1]
            try:
                for cid, loc in self._read_index(pack):
                    self.index.setdefault(cid, loc)
            except ObjectNotFound:
                continue  # removed by a concurrent GC

    def _read_index(self, pack: str) -> list[tuple[bytes, Location]]:
        import zstandard

        blob = self.storage.get(index_key(pack))
        try:
            doc = json.loads(zstandard.ZstdDecompressor().decompress(blob))
        except (zstandard.ZstdError, ValueError) as exc:
            raise IntegrityError(f"chunk index {pack} is corrupt: {exc}") from None
        if doc.get("format") != INDEX_FORMAT:
            raise IntegrityError(f"chunk index {pack}: unknown format {doc.get('format')!r}")
        return [(bytes.fromhex(c), Location(pack, o, n, s)) for c, o, n, s in doc["chunks"]]

    def has(self, cid: bytes) -> bool:
        return cid in self.index

    # -- writing ---------------------------------------------------------------
    def add(self, cid: bytes, size: int, blob: bytes) -> int:
        """Add an encoded chunk unless present; returns the bytes it will add."""
        if cid in self.index:
            return 0
        p = self._open
        self.index[cid] = Location(p.id, p.size, len(blob), size)
        p.entries.append((cid, p.size, len(blob), size))
        p.parts.append(blob)
        p.size += len(blob)
        self.new_chunks += 1
        if p.size >= self.pack_size:
            self.flush()
        return len(blob)

    def flush(self) -> None:
        """Write the open pack, then its index. Call before a manifest refers to chunks."""
        p = self._open
        if not p.entries:
            return
        self._write_pack(p.id, b"".join(p.parts), p.entries)
        self._open = _OpenPack()

    def _write_pack(
        self, pack: str, data: bytes, entries: list[tuple[bytes, int, int, int]]
    ) -> None:
        import zstandard

        self.storage.put(pack_key(pack), data)
        doc = {
            "format": INDEX_FORMAT,
            "pack": pack,
            "size": len(data),
            "chunks": [[c.hex(), o, n, s] for c, o, n, s in entries],
        }
        idx = zstandard.ZstdCompressor(level=3).compress(json.dumps(doc).encode())
        self.storage.put(index_key(pack), idx)
        self.new_bytes += len(data) + len(idx)

    # -- reading ---------------------------------------------------------------
    def read(self, cid: bytes) -> bytes:
        """The chunk's raw bytes, verified against its id."""
        loc = self.index.get(cid)
        if loc is None:
            raise ObjectNotFound(f"{self.storage.url}: chunk {cid.hex()[:16]}… is not in the store")
        blob = self.storage.get_range(pack_key(loc.pack), loc.offset, loc.length)
        if len(blob) != loc.length:
            raise IntegrityError(f"{self.storage.url}: chunk {cid.hex()[:16]}… is truncated")
        raw = self.codec.decode(blob, loc.size)
        if len(raw) != loc.size or self.codec.chunk_id(raw) != cid:
            raise IntegrityError(f"{self.storage.url}: chunk {cid.hex()[:16]}… fails its checksum")
        return raw

    # -- garbage collection ----------------------------------------------------------
    def gc(self, live: Iterable[bytes]) -> GcStats:
        """Free every chunk not in ``live``: delete dead packs, rewrite mixed ones."""
        live_set = set(live)
        stats = GcStats()
        packs: dict[str, list[tuple[bytes, Location]]] = defaultdict(list)
        for obj in self.storage.list("chunks/index/"):
            pack = obj.key.rsplit("/", 1)[1]
            packs[pack] = self._read_index(pack)
        for pack, entries in sorted(packs.items()):
            keep = [(c, loc) for c, loc in entries if c in live_set]
            dead = len(entries) - len(keep)
            if not dead:
                continue
            if keep:
                self._rewrite(pack, keep)
                stats.packs_rewritten += 1
            else:
                stats.packs_deleted += 1
            self.storage.delete(index_key(pack))
            self.storage.delete(pack_key(pack))
            stats.chunks_freed += dead
            stats.bytes_freed += sum(loc.length for c, loc in entries if c not in live_set)
            log.info("pack %s: %d of %d chunks freed", pack, dead, len(entries))
        self.load()
        return stats

    def _rewrite(self, old: str, keep: list[tuple[bytes, Location]]) -> None:
        new = secrets.token_hex(16)
        parts: list[bytes] = []
        entries: list[tuple[bytes, int, int, int]] = []
        offset = 0
        for cid, loc in keep:
            blob = self.storage.get_range(pack_key(old), loc.offset, loc.length)
            if len(blob) != loc.length:
                raise StorageError(f"{self.storage.url}: pack {old} is truncated; GC stopped")
            parts.append(blob)
            entries.append((cid, offset, loc.length, loc.size))
            offset += loc.length
        self._write_pack(new, b"".join(parts), entries)
