"""The chunk store without servers: hostile and corrupt indexes, the quarantine, what a
backup confirms before its manifest, and what a GC removes (orphans, duplicates, dead
writers' leftovers) or must never touch; and when a running backup's writer is gone."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pgharbor.backup.chunkmap import ChunkMapWriter, Identity
from pgharbor.backup.chunks import ChunkStore, parse_index
from pgharbor.backup.gc import collect, live_chunks, sweep_leftovers
from pgharbor.backup.manifest import BackupManifest
from pgharbor.catalog.backups import STALE_AFTER, writer_gone
from pgharbor.envelope import zstd
from pgharbor.errors import IntegrityError, LeaseLost
from pgharbor.storage import open_storage
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import index_key, manifest_key, pack_key, part_key, ref_key
from pgharbor.storage.memory import MemoryStorage


@pytest.fixture
def storage() -> Iterator[Storage]:
    MemoryStorage.reset()
    yield open_storage("memory://store")
    MemoryStorage.reset()


def _index(pack: str, chunks: list[object], size: int = 1000, **extra: object) -> bytes:
    doc = {"format": "pgharbor-chunk-index/1", "pack": pack, "size": size, "chunks": chunks}
    doc.update(extra)
    return bytes(zstd().ZstdCompressor().compress(json.dumps(doc).encode()))


def _pack(store: ChunkStore, *raws: bytes) -> tuple[str, list[bytes]]:
    """Store raws as one new pack; (its name, their ids)."""
    before = _packs(store.storage)
    ids = []
    for raw in raws:
        cid = store.codec.chunk_id(raw)
        store.add(cid, len(raw), store.codec.encode(raw))
        ids.append(cid)
    store.flush()
    (pack,) = _packs(store.storage) - before
    return pack, ids


def _new_pack(storage: Storage, *raws: bytes) -> tuple[str, list[bytes]]:
    store = ChunkStore(storage)
    try:
        return _pack(store, *raws)
    finally:
        store.close()


def _packs(storage: Storage) -> set[str]:
    return {o.key.rsplit("/", 1)[1] for o in storage.list("chunks/packs/")}


def _backup(storage: Storage, backup_id: str, ids: list[bytes], *, running: bool = False) -> None:
    """A backup's chunk map, manifest (unless running) and ref on the target."""
    writer = ChunkMapWriter([storage], Identity("c1", "id-1", "42", backup_id))
    for cid in ids:
        writer.append(cid)
    writer.close()
    if running:
        storage.put(ref_key("c1", backup_id, running=True), b"")
        return
    m = BackupManifest(backup_id, "c1", "id-1", "42", "x", 150000, 65536, chunk_count=len(ids))
    storage.put(manifest_key("c1", backup_id), m.seal())
    storage.put(ref_key("c1", backup_id), b"")


HOSTILE = [
    ("not an object", [1, 2]),
    ("wrong pack", {"pack": "other"}),
    ("chunks not a list", {"chunks": {"a": 1}}),
    ("id not hex", {"chunks": [["zz" * 32, 0, 10, 10]]}),
    ("short id", {"chunks": [["ab" * 8, 0, 10, 10]]}),
    ("offset a string", {"chunks": [["ab" * 32, "0", 10, 10]]}),
    ("negative length", {"chunks": [["ab" * 32, 0, -1, 10]]}),
    ("bool for a number", {"chunks": [["ab" * 32, True, 10, 10]]}),
    ("beyond the pack", {"chunks": [["ab" * 32, 990, 20, 10]]}),
    ("huge raw size", {"chunks": [["ab" * 32, 0, 10, 1 << 40]]}),
    ("entry of 3", {"chunks": [["ab" * 32, 0, 10]]}),
    ("size missing", {"size": None}),
]


@pytest.mark.parametrize("case, change", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_index_is_an_integrity_error(case: str, change: object) -> None:
    if isinstance(change, list):
        blob = bytes(zstd().ZstdCompressor().compress(json.dumps(change).encode()))
    else:
        fields = {"pack": "p1", "chunks": [], "size": 1000}
        fields.update(change)  # type: ignore[call-overload]
        doc = {"format": "pgharbor-chunk-index/1", **fields}
        blob = bytes(zstd().ZstdCompressor().compress(json.dumps(doc).encode()))
    with pytest.raises(IntegrityError, match="chunk index p1 is corrupt"):
        parse_index("p1", blob)


def test_garbage_and_empty_indexes_are_integrity_errors() -> None:
    for blob in (b"", b"\x00" * 10, zstd().ZstdCompressor().compress(b"{" * 100000)):
        with pytest.raises(IntegrityError):
            parse_index("p1", blob)
    assert parse_index("p1", _index("p1", [["ab" * 32, 0, 10, 10]]))[0][1].length == 10


def test_load_quarantines_a_corrupt_index_and_skips_a_dangling_one(storage: Storage) -> None:
    _, good_ids = _new_pack(storage, os.urandom(1000))
    bad, bad_ids = _new_pack(storage, os.urandom(1000))
    gone, gone_ids = _new_pack(storage, os.urandom(1000))
    storage.put(index_key(bad), b"")  # zero bytes, as a full disk leaves it
    storage.delete(pack_key(gone))

    reader = ChunkStore(storage)
    reader.load(quarantine=False)  # a restore or a verification: nothing changes
    assert reader.has(good_ids[0]) and not reader.has(bad_ids[0]) and not reader.has(gone_ids[0])
    assert len(reader.problems) == 2 and storage.exists(index_key(bad))
    reader.close()

    writer = ChunkStore(storage)
    writer.load()  # a backup: the corrupt index goes to the quarantine, its chunks unknown
    assert not storage.exists(index_key(bad)) and storage.get(f"chunks/quarantine/{bad}") == b""
    assert any(f"chunks/quarantine/{bad}" in p for p in writer.problems)
    assert writer.has(good_ids[0]) and not writer.has(bad_ids[0])
    writer.close()


def test_confirm_finds_a_pack_relied_on_that_is_gone(storage: Storage) -> None:
    pack, ids = _new_pack(storage, b"a" * 5000, b"b" * 5000)
    store = ChunkStore(storage)
    store.load()
    assert store.add(ids[0], 5000, None) == 0  # de-duplicated against pack
    store.add(store.codec.chunk_id(b"c" * 5000), 5000, store.codec.encode(b"c" * 5000))
    store.flush()
    assert pack in store.relied and len(store.relied) == 2
    store.confirm()
    storage.delete(index_key(pack))  # a GC freed it meanwhile
    storage.delete(pack_key(pack))
    with pytest.raises(IntegrityError, match="pack\\(s\\) this backup relies on are gone"):
        store.confirm()
    store.close()


def test_gc_removes_orphans_duplicates_and_keeps_quarantined_packs(storage: Storage) -> None:
    raws = [os.urandom(3000) for _ in range(4)]
    _, ids = _new_pack(storage, *raws[:3])
    p2, _ = _new_pack(storage, raws[0], raws[3])  # another backup stored chunk 0 again
    orphan, _ = _new_pack(storage, os.urandom(3000))
    storage.delete(index_key(orphan))  # a writer killed between pack and index
    kept, _ = _new_pack(storage, os.urandom(3000))
    storage.put(f"chunks/quarantine/{kept}", storage.get(index_key(kept)))
    storage.delete(index_key(kept))  # its index is in the quarantine: hands off
    dangling, _ = _new_pack(storage, os.urandom(3000))
    storage.delete(pack_key(dangling))
    _backup(storage, "b1", ids[:2])  # uses chunks 0 and 1

    live = live_chunks(storage)
    guards: list[int] = []
    stats = collect(ChunkStore(storage), live, lambda: guards.append(1))
    live.close()
    assert stats.orphans == 2  # the orphan pack and the dangling index
    assert orphan not in _packs(storage) and not storage.exists(index_key(dangling))
    assert kept in _packs(storage)
    # chunk 0 is kept once, chunks 2 and 3 are freed: p1 rewritten or deleted, p2 deleted
    assert stats.chunks_freed == 3 and p2 not in _packs(storage)
    after = ChunkStore(storage)
    after.load()
    assert sorted(after.index) == sorted(ids[:2])
    assert after.read(ids[0]) == raws[0] and after.read(ids[1]) == raws[1]
    assert len(guards) >= stats.packs_deleted + stats.packs_rewritten + stats.orphans
    after.close()


def test_gc_stops_before_freeing_when_the_lease_is_lost(storage: Storage) -> None:
    _new_pack(storage, os.urandom(3000))
    before = sorted(o.key for o in storage.list(""))

    def lost() -> None:
        raise LeaseLost("the gc lease expired")

    live = live_chunks(storage)
    with pytest.raises(LeaseLost):
        collect(ChunkStore(storage), live, lost)
    live.close()
    assert sorted(o.key for o in storage.list("")) == before


def test_leftovers_of_dead_writers_are_removed(storage: Storage) -> None:
    _backup(storage, "dead", [b"\x01" * 32], running=True)  # killed mid-backup
    _backup(storage, "late", [b"\x02" * 32])  # killed after its ref, before the marker went
    storage.put(ref_key("c1", "late", running=True), b"")
    stale: list[tuple[str, str]] = []
    assert sweep_leftovers(storage, lambda: None, lambda c, b: stale.append((c, b))) == 1
    assert sorted(stale) == [("c1", "dead"), ("c1", "late")]
    keys = {o.key for o in storage.list("")}
    assert not storage.exists(part_key("c1", "dead", 0))
    assert ref_key("c1", "late") in keys and manifest_key("c1", "late") in keys
    assert not [k for k in keys if k.endswith(".running")]
    live = live_chunks(storage)
    assert list(live) == [b"\x02" * 32]
    live.close()


def test_when_a_writer_is_gone() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fresh, old = now - timedelta(seconds=30), now - timedelta(seconds=STALE_AFTER + 1)

    def gone(pid: int) -> bool:
        return pid == 666

    assert (
        writer_gone("h", 666, fresh, now, here="h", gone=gone)
        == "its writer (pid 666 on h) is gone"
    )
    assert writer_gone("h", 42, fresh, now, here="h", gone=gone) is None  # alive (or stopped)
    assert writer_gone("elsewhere", 666, fresh, now, here="h", gone=gone) is None  # not ours
    why = writer_gone("elsewhere", 42, old, now, here="h", gone=gone)
    assert why is not None and "no sign of life" in why
    assert writer_gone("h", None, old, now, here="h", gone=gone) is not None
