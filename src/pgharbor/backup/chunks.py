"""A content-addressed chunk store on one target, shared by every cluster on it.

    chunks/packs/<id[:2]>/<id>   a pack: many encoded chunks back to back
    chunks/index/<id>            the pack's index: chunk id -> (offset, length, size)
    chunks/refs/<cluster>/<backup>[.running]   which backups use the store (for GC)

A chunk's id is the SHA-256 of its raw bytes, so a chunk already present, from an
earlier backup or another cluster, is never stored twice. Encrypted (a key is configured,
see pgharbor.crypto), the id is an HMAC-SHA256 of the raw bytes with a key derived from
the master key: chunks dedup among everything written with one key, and ids tell nothing
to anyone without it. Packs keep an
object store from holding millions of tiny objects; a pack is written (durably) before
its index, so an indexed chunk is always readable. Garbage collection deletes packs with
no live chunk and rewrites packs with some, so exactly the unused chunks are freed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from pgharbor import crypto
from pgharbor.backup.chunkdb import ChunkIndex, Location
from pgharbor.envelope import decompress, zstd  # zstandard, as the archive path loads it
from pgharbor.errors import EncryptionError, IntegrityError, ObjectNotFound, StorageError
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage

log = logging.getLogger(__name__)

PACK_SIZE = 16 * 1024 * 1024
MAX_CHUNK = 1024 * 1024  # chunks are 64 KiB; no index may make a read allocate more
MAX_INDEX = 256 * 1024 * 1024  # the JSON index of one pack, decompressed
INDEX_FORMAT = "pgharbor-chunk-index/1"
_NONE, _ZSTD, _AES = 0, 1, 2
_HEAD = 1 + crypto.KEY_ID_BYTES  # an encrypted chunk's type byte and key id
_TAG = 16  # AES-GCM's authentication tag


class ChunkCodec:
    """How chunks are named and encoded: SHA-256 ids, zstd (or no) compression.

    blob = 1 type byte (0 raw, 1 zstd) | data"""

    keys: crypto.Keyring | None = None  # what manifests are sealed and opened with

    def __init__(self, compression: str = "zstd", level: int = 3) -> None:
        self.compression, self.level = compression, level

    def chunk_id(self, raw: bytes | memoryview) -> bytes:
        return hashlib.sha256(raw).digest()

    def verify(self, raw: bytes, cid: bytes, blob: bytes) -> bool:
        """Whether ``raw``, decoded from ``blob``, is the chunk named ``cid``."""
        return self.chunk_id(raw) == cid

    @staticmethod
    def for_cluster(
        settings: Settings, cluster: str, targets: Iterable[str], *, writing: bool = True
    ) -> ChunkCodec:
        """The codec for ``cluster``'s chunks on ``targets``: plain, or encrypting when a
        key is configured. One backup's chunks carry the same ids on every target, so
        writing needs one key for all of them; reading can use the keys of every target."""
        names = list(targets)
        rings = {t: crypto.keyring(settings, cluster, t) for t in names}
        if not names:
            rings[""] = crypto.keyring(settings, cluster)
        if writing:
            current = {t: r.current.id if r and r.current else "none" for t, r in rings.items()}
            if len(set(current.values())) > 1:
                raise EncryptionError(
                    f"cluster {cluster!r}'s targets use different encryption keys ("
                    + ", ".join(f"{t}: {k}" for t, k in current.items())
                    + "); a backup needs one key on all the targets it is written to",
                    hint=f"set the key in [clusters.{cluster}] only, or back up with --target",
                )
        merged: crypto.Keyring | None = None
        for r in rings.values():
            if r is not None:
                merged = r if merged is None else merged.merged(r)
        if merged is None:
            return ChunkCodec(settings.compression, settings.compression_level)
        return EncryptedChunkCodec(merged, settings.compression, settings.compression_level)

    def encode(self, raw: bytes | memoryview) -> bytes:
        if self.compression == "zstd":
            data: bytes = zstd().ZstdCompressor(level=self.level).compress(raw)
            if len(data) < len(raw):
                return bytes([_ZSTD]) + data
        return bytes([_NONE]) + bytes(raw)

    def decode(self, blob: bytes, size: int) -> bytes:
        kind, payload = blob[:1], blob[1:]
        if kind == bytes([_NONE]):
            return payload
        if kind == bytes([_ZSTD]):
            if not 0 <= size <= MAX_CHUNK:  # the size comes from an index: bound it
                raise IntegrityError(f"chunk claims {size} bytes (at most {MAX_CHUNK})")
            try:
                return decompress(payload, "zstd", size)
            except IntegrityError as exc:
                raise IntegrityError(f"chunk does not decompress: {exc}") from None
        if kind == bytes([_AES]):
            raise EncryptionError(
                f"chunk is encrypted (key {blob[1:_HEAD].hex()}) and no encryption key is "
                "configured"
            )
        raise IntegrityError("chunk has an unknown encoding")


class EncryptedChunkCodec(ChunkCodec):
    """Chunks encrypted after compression with the keyring's current key.

    id   = HMAC-SHA256(chunk-id key, raw)
    blob = 2 | key id (8 bytes) | nonce (12) | AES-256-GCM(plain codec's blob) + tag (16)

    The key id and the type byte are authenticated data. Chunks of the plain codec and
    of any key in the keyring stay readable (backups made before encryption or before a
    key rotation); with no current key, new chunks are written plain."""

    def __init__(self, keys: crypto.Keyring, compression: str = "zstd", level: int = 3) -> None:
        super().__init__(compression, level)
        self.keys = self.ring = keys

    def chunk_id(self, raw: bytes | memoryview) -> bytes:
        if self.ring.current is None:
            return super().chunk_id(raw)
        return self.ring.current.chunk_id(raw)

    def encode(self, raw: bytes | memoryview) -> bytes:
        plain = super().encode(raw)
        key = self.ring.current
        if key is None:
            return plain
        head = bytes([_AES]) + bytes.fromhex(key.id)
        nonce = crypto.new_nonce()
        return head + nonce + key.encrypt(nonce, plain, head)

    def _key(self, blob: bytes) -> crypto.Key:
        return self.ring.get(blob[1:_HEAD].hex(), "a chunk of this backup")

    def decode(self, blob: bytes, size: int) -> bytes:
        if blob[:1] != bytes([_AES]):
            if self.ring.required:
                raise self.ring.refuse_plaintext("chunk")
            return super().decode(blob, size)
        if len(blob) < _HEAD + crypto.NONCE_BYTES + _TAG:
            raise IntegrityError("encrypted chunk is truncated")
        nonce, sealed = blob[_HEAD : _HEAD + crypto.NONCE_BYTES], blob[_HEAD + crypto.NONCE_BYTES :]
        plain = self._key(blob).decrypt(nonce, sealed, blob[:_HEAD], "chunk")
        return super().decode(plain, size)

    def verify(self, raw: bytes, cid: bytes, blob: bytes) -> bool:
        if blob[:1] != bytes([_AES]):
            return not self.ring.required and hashlib.sha256(raw).digest() == cid
        return self._key(blob).chunk_id(raw) == cid


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
        self.index = ChunkIndex()  # on local disk: see chunkdb
        self._open = _OpenPack()
        self.new_bytes = 0
        self.new_chunks = 0

    # -- index ---------------------------------------------------------------
    def load(self) -> None:
        self.index.clear()
        for obj in self.storage.list("chunks/index/"):
            pack = obj.key.rsplit("/", 1)[1]
            try:
                self.index.add_many(self._read_index(pack))
            except ObjectNotFound:
                continue  # removed by a concurrent GC

    def close(self) -> None:
        self.index.close()

    def _read_index(self, pack: str) -> list[tuple[bytes, Location]]:
        blob = self.storage.get(index_key(pack))
        try:
            doc = json.loads(decompress(blob, "zstd", MAX_INDEX))
        except (IntegrityError, ValueError) as exc:
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
        self.index.add(cid, Location(p.id, p.size, len(blob), size))
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
        zstandard = zstd()
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
        return self.unpack(
            cid, loc, self.storage.get_range(pack_key(loc.pack), loc.offset, loc.length)
        )

    def unpack(self, cid: bytes, loc: Location, blob: bytes | memoryview) -> bytes:
        """The raw bytes of the chunk stored as ``blob`` at ``loc``, verified against its id."""
        if len(blob) != loc.length:
            raise IntegrityError(f"{self.storage.url}: chunk {cid.hex()[:16]}… is truncated")
        blob = bytes(blob)
        raw = self.codec.decode(blob, loc.size)
        if len(raw) != loc.size or not self.codec.verify(raw, cid, blob):
            raise IntegrityError(f"{self.storage.url}: chunk {cid.hex()[:16]}… fails its checksum")
        return raw

    # -- garbage collection ----------------------------------------------------------
    def gc(self, live: Container[bytes]) -> GcStats:
        """Free every chunk not in ``live``: delete dead packs, rewrite mixed ones. One pack
        at a time (live is on disk, see chunkdb): memory does not grow with the store.
        The index is not reloaded: load() again before using this store further."""
        stats = GcStats()
        packs = [obj.key.rsplit("/", 1)[1] for obj in self.storage.list("chunks/index/")]
        for pack in packs:
            entries = self._read_index(pack)
            keep = [(c, loc) for c, loc in entries if c in live]
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
            stats.bytes_freed += sum(loc.length for c, loc in entries if c not in live)
            log.info("pack %s: %d of %d chunks freed", pack, dead, len(entries))
        self.index.clear()
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
