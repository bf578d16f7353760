"""The chunk map (a backup's chunk ids in parts beside its manifest) and the on-disk
chunk index and set that keep memory flat however large the data."""

from __future__ import annotations

import hashlib
import secrets
import threading

import pytest

from pgharbor.backup.chunkdb import ChunkIndex, ChunkSet, Location
from pgharbor.backup.chunkmap import (
    PART_IDS,
    ChunkMapReader,
    ChunkMapWriter,
    Identity,
    chunks_of,
    delete_backup_objects,
)
from pgharbor.errors import IntegrityError
from pgharbor.storage.layout import part_key
from pgharbor.storage.memory import MemoryStorage


def _id(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def _storages(n: int) -> list[MemoryStorage]:
    return [MemoryStorage(f"memory://cm-{secrets.token_hex(4)}") for _ in range(n)]


def test_chunkmap_spans_parts_and_reads_any_range() -> None:
    a, b = _storages(2)
    w = ChunkMapWriter([a, b], Identity("c1", "cid", "42", "B1"))
    total = PART_IDS * 2 + 10
    for i in range(total):
        assert w.append(_id(i)) == i
    w.close()
    assert (w.count, w.parts) == (total, 3)
    keys = [o.key for o in a.list("")]
    assert keys == [part_key("c1", "B1", n) for n in range(3)] == [o.key for o in b.list("")]
    r = ChunkMapReader(a.get, "c1", "B1", total)
    assert r.ids(0, 3) == [_id(0), _id(1), _id(2)]
    edge = PART_IDS - 2
    assert r.ids(edge, 5) == [_id(i) for i in range(edge, edge + 5)]  # across a part boundary
    assert r.ids(total - 1, 1) == [_id(total - 1)]
    assert r.ids(5, 0) == []
    assert list(r) == [_id(i) for i in range(total)]
    with pytest.raises(IntegrityError, match="has 131082 ids"):
        r.ids(total - 1, 2)


def test_chunkmap_damage_and_mismatch_are_errors() -> None:
    (s,) = _storages(1)
    w = ChunkMapWriter([s], Identity("c1", "cid", "42", "B1"))
    for i in range(100):
        w.append(_id(i))
    w.close()
    key = part_key("c1", "B1", 0)
    with pytest.raises(IntegrityError, match="not the chunk map part"):
        ChunkMapReader(s.get, "c1", "B1", 101).ids(0, 1)  # the manifest says more ids
    blob = bytearray(s.get(key))
    blob[-1] ^= 1
    s.put(key, bytes(blob))
    with pytest.raises(IntegrityError):
        ChunkMapReader(s.get, "c1", "B1", 100).ids(0, 1)
    with pytest.raises(ValueError):
        w.append(b"short")


def test_delete_backup_objects_takes_manifest_and_parts_only() -> None:
    (s,) = _storages(1)
    w = ChunkMapWriter([s], Identity("c1", "cid", "42", "B1"))
    w.append(_id(1))
    w.close()
    s.put("c1/backups/B1/manifest", b"m")
    s.put("c1/backups/B2/manifest", b"other backup")
    s.put("chunks/refs/c1/B2", b"B2")
    delete_backup_objects(s, "c1", "B1")
    assert [o.key for o in s.list("")] == ["c1/backups/B2/manifest", "chunks/refs/c1/B2"]


def test_chunks_of() -> None:
    assert [chunks_of(n, 4) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]


def test_chunk_index_on_disk() -> None:
    idx = ChunkIndex()
    loc = Location("p1", 10, 20, 30)
    idx.add(_id(1), loc)
    idx.add(_id(1), Location("p2", 0, 1, 1))  # the first location stays
    idx.add_many([(_id(i), Location("p3", i, 1, 1)) for i in range(2, 1000)])
    assert idx.get(_id(1)) == idx[_id(1)] == loc
    assert _id(5) in idx and _id(5000) not in idx and idx.get(_id(5000)) is None
    with pytest.raises(KeyError):
        idx[_id(5000)]
    assert len(idx) == 999
    assert sorted(idx) == sorted(_id(i) for i in range(1, 1000))
    idx.clear()
    assert len(idx) == 0
    idx.close()


def test_chunk_set_from_many_threads() -> None:
    s = ChunkSet()

    def add(start: int) -> None:
        for i in range(start, start + 500):
            s.add_many([_id(i)])
            assert _id(i) in s

    ts = [threading.Thread(target=add, args=(n * 250,)) for n in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(s) == 1250 and set(s) == {_id(i) for i in range(1250)}
    s.close()
