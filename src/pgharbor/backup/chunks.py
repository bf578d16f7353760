"""A content-addressed chunk store on one target, shared by every cluster on it.

    chunks/packs/<id[:2]>/<id>   a pack: many encoded chunks back to back
    chunks/index/<id>            the pack's index: chunk id -> (offset, length, size)
    chunks/refs/<cluster>/<backup>[.running]   which backups use the store (for GC)
    chunks/quarantine/<id>       an index that could not be read, set aside (see load)
    chunks/leases/...            who relies on the store right now (see lease)

A chunk's id is the SHA-256 of its raw bytes, so a chunk already present, from an
earlier backup or another cluster, is never stored twice. Encrypted (a key is configured,
see pgharbor.crypto), the id is an HMAC-SHA256 of the raw bytes with a key derived from
the master key: chunks dedup among everything written with one key, and ids tell nothing
to anyone without it. Packs keep an
object store from holding millions of tiny objects; a pack is written (durably) before
its index, so an indexed chunk is always readable. Garbage collection (backup.gc) deletes
packs with no live chunk and rewrites packs with some, so exactly the unused chunks are
freed.

One bad index never blocks the store: an index that does not parse is moved to the
quarantine (by a backup) or skipped (by a reader), and its chunks count as unknown:
backups store them again, restores read them from another placement. An index whose
pack is gone is skipped too (a GC removes it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import zstandard

from pgharbor import crypto, faultpoint
from pgharbor.backup.chunkdb import ChunkIndex, Location
from pgharbor.envelope import decompress
from pgharbor.errors import EncryptionError, IntegrityError, ObjectNotFound, StorageError
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import (
    INDEXES,
    PACKS,
    index_key,
    pack_key,
    partition_key,
    partition_prefix,
    quarantine_key,
)

log = logging.getLogger(__name__)

Probe = tuple[Location | None, int]  # ChunkStore.probe: where a chunk was, and when

PACK_SIZE = 16 * 1024 * 1024
MAX_CHUNK = 1024 * 1024  # chunks are 64 KiB; no index may make a read allocate more
MAX_INDEX = 256 * 1024 * 1024  # the JSON index of one pack, decompressed
MAX_BLOB = MAX_CHUNK + 1024  # a stored chunk: its encoding's overhead is small
CONFIRM_BY_STAT = 2000  # up to this many packs relied on, confirm() looks each one up
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
        self._local = threading.local()  # one compressor per thread: set-up costs a lot

    def _compressor(self) -> zstandard.ZstdCompressor:
        c: zstandard.ZstdCompressor | None = getattr(self._local, "zstd", None)
        if c is None:
            c = self._local.zstd = zstandard.ZstdCompressor(level=self.level)
        return c

    def _decompress(self, payload: bytes, size: int) -> bytes:
        """As envelope.decompress (never more than ``size`` bytes: a frame claiming more
        is refused), with one decompressor per thread: making one costs as much as
        decompressing a 64 KiB chunk."""
        d: zstandard.ZstdDecompressor | None = getattr(self._local, "unzstd", None)
        if d is None:
            d = self._local.unzstd = zstandard.ZstdDecompressor()
        try:
            if zstandard.frame_content_size(payload) > size:
                raise IntegrityError(
                    f"chunk does not decompress: its frame claims more than {size} bytes"
                )
            data: bytes = d.decompress(payload, max_output_size=size)
        except zstandard.ZstdError as exc:
            raise IntegrityError(
                f"chunk does not decompress: stored object is corrupt ({exc})"
            ) from None
        return data

    def chunk_id(self, raw: bytes | memoryview) -> bytes:
        return hashlib.sha256(raw).digest()

    def verify(self, raw: bytes, cid: bytes, blob: bytes) -> bool:
        """Whether ``raw``, decoded from ``blob``, is the chunk named ``cid``."""
        return self.chunk_id(raw) == cid

    @staticmethod
    def for_keys(
        cluster: str,
        rings: Mapping[str, crypto.Keyring | None],
        compression: str = "zstd",
        level: int = 3,
        *,
        writing: bool = True,
    ) -> ChunkCodec:
        """The codec for ``cluster``'s chunks given the keyring of each target (see
        pgharbor.access.chunk_codec): plain, or encrypting when a key is configured. One
        backup's chunks carry the same ids on every target, so writing needs one key for
        all of them; reading can use the keys of every target."""
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
            return ChunkCodec(compression, level)
        return EncryptedChunkCodec(merged, compression, level)

    def encode(self, raw: bytes | memoryview) -> bytes:
        if self.compression == "zstd":
            data: bytes = self._compressor().compress(raw)
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
            return self._decompress(payload, size)
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


def names(storage: Storage, prefix: str) -> dict[str, int]:
    """The last path component -> size of every object below prefix (packs, indexes)."""
    return {obj.key.rsplit("/", 1)[1]: obj.size for obj in storage.list(prefix)}


def _count(value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{value!r} is not a number in {low}..{high}")
    return value


def parse_index(pack: str, blob: bytes) -> list[tuple[bytes, Location]]:
    """A pack's index, every entry checked (types and bounds): whatever is wrong with it
    is an IntegrityError, never an exception from the decoder or a hostile value."""
    try:
        doc = json.loads(decompress(blob, "zstd", MAX_INDEX))
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        if doc.get("format") != INDEX_FORMAT:
            raise ValueError(f"unknown format {doc.get('format')!r}")
        if doc.get("pack") != pack:
            raise ValueError(f"it is the index of pack {doc.get('pack')!r}")
        size = _count(doc.get("size"), 0, 1 << 40)
        if not isinstance(doc.get("chunks"), list):
            raise ValueError("no list of chunks")
        entries = []
        for e in doc["chunks"]:
            if not isinstance(e, list) or len(e) != 4 or not isinstance(e[0], str):
                raise ValueError(f"bad entry {str(e)[:80]}")
            cid = bytes.fromhex(e[0])
            if len(cid) != 32:
                raise ValueError(f"bad chunk id {e[0][:80]!r}")
            off = _count(e[1], 0, size)
            loc = Location(pack, off, _count(e[2], 1, size - off), _count(e[3], 0, MAX_CHUNK))
            if loc.length > MAX_BLOB:
                raise ValueError(f"a chunk of {loc.length} bytes")
            entries.append((cid, loc))
    except (IntegrityError, ValueError, TypeError, RecursionError) as exc:
        reason = exc.message if isinstance(exc, IntegrityError) else str(exc)
        raise IntegrityError(f"chunk index {pack} is corrupt: {reason}"[:300]) from None
    return entries


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
        # the open pack's chunks, not in the index yet (it gets them in one batch when the
        # pack is written); ``generation`` counts those batches, see probe()
        self._pending: dict[bytes, Location] = {}
        self.generation = 0
        self.new_bytes = 0
        self.new_chunks = 0
        self.relied: set[str] = set()  # packs holding a chunk added to this store
        self.problems: list[str] = []  # indexes load() could not use, and why
        self.partition: str | None = None  # the cluster whose packs were loaded (see load)
        self.marked: set[str] = set()  # packs the partition's markers name
        self.loaded: set[str] = set()  # packs whose index is in self.index
        self.whole = False  # every index of the store was read

    # -- index ---------------------------------------------------------------
    def load(
        self, *, quarantine: bool = True, dangling: bool = False, partition: str | None = None
    ) -> None:
        """Read the usable indexes: with ``partition`` (a cluster), only those of the packs
        its markers name (``chunks/partitions/CLUSTER/PACK``: the packs its backups wrote
        or relied on), so the cost is the cluster's own data, not that of every cluster
        on the target; a cluster with no marker yet (its first backup here, or a store
        written before partitions) reads every index, as all of them did before. One
        that is corrupt is moved to the quarantine (``quarantine``: a backup, which then
        stores its chunks again) or skipped (a reader, which then reads them from another
        placement); one whose pack is gone is skipped (unless ``dangling``: a
        verification names the missing pack). Each is one warning. Unreachable storage
        still fails."""
        self.index.clear()
        self._pending.clear()
        self.problems, self.loaded, self.whole = [], set(), False
        self.partition, self.marked = partition, set()
        if partition is not None:
            self.marked = set(names(self.storage, partition_prefix(partition)))
            if self.marked:
                for pack in sorted(self.marked):
                    if not dangling and not self.storage.exists(pack_key(pack)):
                        if self.storage.exists(index_key(pack)):
                            self._skip(pack, f"chunk index {pack} names a pack that is not there")
                        continue  # a marker a GC has not removed yet
                    self._read_index(pack, quarantine)
                return
        self.load_rest(quarantine=quarantine, dangling=dangling)

    def load_rest(self, *, quarantine: bool = True, dangling: bool = False) -> None:
        """Read every index not read yet (a restore's chunk that its cluster's partition
        does not hold: a backup from before partitions, or a pack a GC rewrote without
        its markers)."""
        if self.whole:
            return
        packs = names(self.storage, PACKS)  # first: see backup.gc
        for pack in names(self.storage, INDEXES):
            if pack in self.loaded:
                continue
            if pack not in packs and not dangling:
                self._skip(pack, f"chunk index {pack} names a pack that is not there")
                continue
            self._read_index(pack, quarantine)
        self.whole = True

    def _read_index(self, pack: str, quarantine: bool) -> None:
        try:
            blob = self.storage.get(index_key(pack))
        except ObjectNotFound:
            return  # removed by a GC, or quarantined
        try:
            self.index.add_many(parse_index(pack, blob))
        except IntegrityError as exc:
            if quarantine:
                self.quarantine(pack, blob, exc.message)
            else:
                self._skip(pack, exc.message)
            return
        self.loaded.add(pack)

    def _skip(self, pack: str, why: str) -> None:
        self.problems.append(why)
        log.warning("warning: %s: %s; its chunks are treated as unknown", self.storage.url, why)

    def quarantine(self, pack: str, blob: bytes, why: str) -> None:
        """Set a corrupt index aside (never deleted: a human may still need it; a GC
        keeps its pack) so that it no longer stands in anyone's way."""
        try:
            self.storage.put(quarantine_key(pack), blob)
            self.storage.delete(index_key(pack))
        except StorageError as exc:
            self._skip(pack, f"{why} (cannot move it to the quarantine: {exc.message})")
            return
        self._skip(pack, f"{why}: moved to {quarantine_key(pack)}")

    def close(self) -> None:
        self.index.close()

    def lookup(self, cid: bytes) -> Location | None:
        return self._pending.get(cid) or self.index.get(cid)

    def has(self, cid: bytes) -> bool:
        return self.lookup(cid) is not None

    def probe(self, cid: bytes) -> Probe:
        """Where the chunk is now (any thread may ask, while the writer adds): the answer
        and the generation it was given in, for add()."""
        gen = self.generation  # first: see flush
        return self.lookup(cid), gen

    def probe_many(self, cids: list[bytes]) -> list[Probe]:
        """probe() of each (one index query for all of them)."""
        gen = self.generation  # first: see flush
        pending = self._pending
        found = self.index.get_many([c for c in cids if c not in pending])
        return [(pending.get(c) or found.get(c), gen) for c in cids]

    # -- writing ---------------------------------------------------------------
    def add(self, cid: bytes, size: int, blob: bytes | None, probe: Probe | None = None) -> int:
        """Add an encoded chunk unless present (``blob`` may be None then); returns the
        bytes it will add. Either way the pack holding it is one this store relies on.
        ``probe`` is what probe() said when the chunk was hashed: stores only gain chunks,
        so a chunk present then is present now, and one missing then can since only be
        in the open pack, or in the index if a pack was written since."""
        if probe is None:
            loc = self.lookup(cid)
        else:
            loc, gen = probe
            if loc is None:
                loc = self._pending.get(cid)
                if loc is None and gen != self.generation:
                    loc = self.index.get(cid)
        if loc is not None:
            self.relied.add(loc.pack)
            return 0
        assert blob is not None, "a chunk the store lacks needs its encoding"
        p = self._open
        self._pending[cid] = Location(p.id, p.size, len(blob), size)
        self.relied.add(p.id)
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
        # the index first, then the generation, then the open pack's map: a probe that
        # saw neither its chunk in the index nor in the map saw the old generation
        self.index.add_many(list(self._pending.items()))
        self.loaded.add(p.id)
        self.generation += 1
        self._pending = {}
        self._open = _OpenPack()

    def mark(self) -> None:
        """Name every pack this store relies on as one of the partition's (see load), so
        the cluster's next backup reads its index; before the manifest, under the
        backup lease. Markers only ever make a load read less: a pack without one is
        still found by a reader that reads every index."""
        if self.partition is None:
            return
        for pack in sorted(self.relied - self.marked):
            self.storage.put(partition_key(self.partition, pack), pack.encode())
            self.marked.add(pack)

    def confirm(self) -> None:
        """Before a manifest that refers to this store's chunks: every pack relied on
        still exists with its index, or IntegrityError. Packs are never changed in
        place, so a pack that is there still holds what it held. A few packs are looked
        up one by one (the cost of the backup's own data); many are checked against one
        listing of each (cheaper on an object store)."""
        if len(self.relied) <= CONFIRM_BY_STAT:
            gone = sorted(
                p
                for p in self.relied
                if not self.storage.exists(pack_key(p)) or not self.storage.exists(index_key(p))
            )
        else:
            packs = names(self.storage, PACKS)
            indexes = names(self.storage, INDEXES)
            gone = sorted(p for p in self.relied if p not in packs or p not in indexes)
        if gone:
            raise IntegrityError(
                f"{self.storage.url}: {len(gone)} pack(s) this backup relies on are gone "
                f"({', '.join(gone[:3])}{', …' if len(gone) > 3 else ''}): the backup is "
                "not usable"
            )

    def _write_pack(
        self, pack: str, data: bytes, entries: list[tuple[bytes, int, int, int]]
    ) -> None:
        self.storage.put(pack_key(pack), data)
        faultpoint.point("chunks.pack_written")  # a pack without its index
        doc = {
            "format": INDEX_FORMAT,
            "pack": pack,
            "size": len(data),
            "chunks": [[c.hex(), o, n, s] for c, o, n, s in entries],
        }
        idx = zstandard.ZstdCompressor(level=3).compress(json.dumps(doc).encode())
        self.storage.put(index_key(pack), idx)
        self.new_bytes += len(data) + len(idx)

    def repack(self, old: str, keep: list[tuple[bytes, Location]]) -> str:
        """Write the chunks ``keep`` of pack ``old`` into a new pack (with its index);
        returns the new pack's id."""
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
        return new

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
