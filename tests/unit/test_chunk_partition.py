"""The chunk index partitioned per cluster, without servers: a backup reads the indexes of
its own cluster's packs only, de-duplicates across that cluster's backups, adopts the
packs of a store written before partitions; a GC carries the markers along with the
packs; a restore still finds a chunk outside the partition; the index's filter never
hides a chunk that is there."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pgharbor.backup.chunkdb import ChunkIndex, Location
from pgharbor.backup.chunks import ChunkStore
from pgharbor.backup.gc import collect, partitions
from pgharbor.restore.source import BackupSource, Wanted
from pgharbor.storage import open_storage
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import index_key, pack_key, partition_key
from pgharbor.storage.memory import MemoryStorage


@pytest.fixture
def storage() -> Iterator[Storage]:
    MemoryStorage.reset()
    yield open_storage("memory://shared")
    MemoryStorage.reset()


def _raw(n: int) -> bytes:
    return n.to_bytes(8, "big") * 4096  # 32 KiB, distinct per n


def _backup(storage: Storage, cluster: str, chunks: list[int]) -> ChunkStore:
    """What a backup of ``cluster`` does with its store: load its partition, add every
    chunk, flush, mark. The store is returned closed (its counters stay)."""
    store = ChunkStore(storage)
    try:
        store.load(partition=cluster)
        for n in chunks:
            raw = _raw(n)
            cid = store.codec.chunk_id(raw)
            probe = store.probe(cid)
            store.add(cid, len(raw), None if probe[0] else store.codec.encode(raw), probe)
        store.flush()
        store.mark()
        store.confirm()
    finally:
        store.close()
    return store


def _packs(storage: Storage) -> set[str]:
    return {o.key.rsplit("/", 1)[1] for o in storage.list("chunks/packs/")}


def _marked(storage: Storage, cluster: str) -> set[str]:
    return {p for p, cs in partitions(storage).items() if cluster in cs}


def test_a_backup_reads_only_its_own_clusters_indexes(storage: Storage) -> None:
    first = _backup(storage, "c1", [1, 2, 3])
    for i in range(5):  # other clusters on the same target
        _backup(storage, f"other{i}", [100 + i, 200 + i])
    assert first.whole and len(_packs(storage)) == 6
    assert _marked(storage, "c1") == first.relied

    again = _backup(storage, "c1", [1, 2, 3, 4])
    assert not again.whole  # its partition had markers: no other index was read
    assert again.loaded == first.relied | (again.relied - first.relied)
    assert again.new_chunks == 1  # dedup across the cluster's backups still works
    assert first.relied <= again.relied


def test_no_other_clusters_chunk_is_in_a_partitioned_index(storage: Storage) -> None:
    _backup(storage, "c1", [1])
    _backup(storage, "c2", [2])
    store = ChunkStore(storage)
    try:
        store.load(partition="c1")
        assert store.has(store.codec.chunk_id(_raw(1)))
        assert not store.has(store.codec.chunk_id(_raw(2)))
    finally:
        store.close()


def test_a_store_from_before_partitions_is_adopted_by_the_first_backup(
    storage: Storage,
) -> None:
    legacy = ChunkStore(storage)  # as the old code wrote it: packs and indexes, no markers
    try:
        for n in (1, 2):
            raw = _raw(n)
            legacy.add(legacy.codec.chunk_id(raw), len(raw), legacy.codec.encode(raw))
        legacy.flush()
    finally:
        legacy.close()
    (old,) = _packs(storage)
    assert partitions(storage) == {}

    first = _backup(storage, "c1", [1, 2, 3])
    assert first.whole and first.new_chunks == 1  # de-duplicated against the old pack
    assert old in _marked(storage, "c1")  # and adopted it
    second = _backup(storage, "c1", [1, 2, 3])
    assert not second.whole and second.new_chunks == 0


def test_gc_moves_markers_with_rewritten_packs_and_drops_them_with_freed_ones(
    storage: Storage,
) -> None:
    mixed = _backup(storage, "c1", [1, 2])
    (pack,) = mixed.relied
    storage.put(partition_key("c2", pack), pack.encode())  # c2 relies on it too
    dead = _backup(storage, "c3", [7])
    assert len(dead.relied) == 1
    storage.put(partition_key("c1", "f" * 32), b"")  # a marker whose pack is gone

    probe = ChunkStore(storage)
    keep = {probe.codec.chunk_id(_raw(1))}
    try:
        stats = collect(probe, keep, lambda: None)
    finally:
        probe.close()
    assert stats.packs_rewritten == 1 and stats.packs_deleted == 1
    (new,) = _packs(storage)
    assert new != pack
    # the new pack is in both partitions; the dead pack's and the orphan's markers went
    assert {p: sorted(cs) for p, cs in partitions(storage).items()} == {new: ["c1", "c2"]}
    after = _backup(storage, "c2", [1])
    assert not after.whole and after.new_chunks == 0  # c2 still finds the kept chunk


def test_a_restore_finds_chunks_outside_the_partition(storage: Storage) -> None:
    _backup(storage, "c1", [1])
    legacy = ChunkStore(storage)
    try:
        raw = _raw(9)
        legacy.add(legacy.codec.chunk_id(raw), len(raw), legacy.codec.encode(raw))
        legacy.flush()  # a pack no marker names (written before partitions)
    finally:
        legacy.close()
    codec = ChunkStore(storage).codec
    source = BackupSource([("t", storage)], partition="c1")
    try:
        inside = Wanted(codec.chunk_id(_raw(1)), "a")
        runs, alone = source.runs([inside])
        assert len(runs) == 1 and not alone
        assert not source.sources[0].store.whole  # found in the partition alone
        outside = Wanted(codec.chunk_id(_raw(9)), "b")
        runs, alone = source.runs([outside])
        assert len(runs) == 1 and not alone and source.sources[0].store.whole
        assert [raw for _, raw in source.read_run(runs[0])] == [_raw(9)]
        assert source.chunk(outside.cid, "b") == _raw(9)
    finally:
        source.close()


def test_a_load_skips_markers_of_removed_packs_and_warns_about_lost_packs(
    storage: Storage,
) -> None:
    one = _backup(storage, "c1", [1])
    two = _backup(storage, "c1", [2])
    (p1,) = one.relied
    (p2,) = two.relied - one.relied
    storage.delete(index_key(p1))  # a GC removed it; its marker is still there
    storage.delete(pack_key(p1))
    storage.delete(pack_key(p2))  # the pack is lost, its index is not
    store = ChunkStore(storage)
    try:
        store.load(partition="c1")
        assert store.loaded == set() and not store.whole
        assert store.problems == [f"chunk index {p2} names a pack that is not there"]
    finally:
        store.close()


def test_confirm_fails_when_a_relied_on_pack_is_gone(storage: Storage) -> None:
    _backup(storage, "c1", [1])
    store = ChunkStore(storage)
    try:
        store.load(partition="c1")
        raw = _raw(1)
        cid = store.codec.chunk_id(raw)
        store.add(cid, len(raw), None, store.probe(cid))
        (pack,) = store.relied
        storage.delete(index_key(pack))
        with pytest.raises(Exception, match="pack\\(s\\) this backup relies on are gone"):
            store.confirm()
    finally:
        store.close()


def test_the_index_filter_never_hides_a_chunk() -> None:
    index = ChunkIndex()
    try:
        ids = [os.urandom(32) for _ in range(5000)]
        index.add_many((c, Location("p", i, 1, 1)) for i, c in enumerate(ids))
        assert all(index.get(c) == Location("p", i, 1, 1) for i, c in enumerate(ids))
        absent = [os.urandom(32) for _ in range(5000)]
        assert not any(c in index for c in absent)
        index.clear()
        assert ids[0] not in index and len(index) == 0
    finally:
        index.close()


def test_an_add_after_a_flush_finds_what_the_flush_indexed(storage: Storage) -> None:
    """A chunk probed before a pack was written (missing then), settled after it was
    written with the same chunk: found in the index, not stored twice."""
    store = ChunkStore(storage)
    try:
        store.load(partition="c1")
        raw = _raw(5)
        cid = store.codec.chunk_id(raw)
        early = store.probe(cid)
        store.add(cid, len(raw), store.codec.encode(raw))
        store.flush()
        assert store.add(cid, len(raw), store.codec.encode(raw), early) == 0
        assert store.new_chunks == 1
    finally:
        store.close()


def test_probe_many_sees_the_index_and_the_open_pack(storage: Storage) -> None:
    _backup(storage, "c1", [1])
    store = ChunkStore(storage)
    try:
        store.load(partition="c1")
        ids = [store.codec.chunk_id(_raw(n)) for n in (1, 2, 3)]
        store.add(ids[1], 32768, store.codec.encode(_raw(2)))  # in the open pack only
        got = store.probe_many(ids)
        assert [loc is not None for loc, _ in got] == [True, True, False]
        assert got == [store.probe(c) for c in ids]
    finally:
        store.close()
