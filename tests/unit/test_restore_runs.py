"""How a restore groups chunks into ranged reads (restore.source.BackupSource.runs):
neighbours in a pack share a read unless more than MAX_GAP apart, no read spans more
than MAX_RUN, every chunk is in exactly one run, on the first placement that has it."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator

import pytest

from pgharbor.envelope import zstd
from pgharbor.restore.source import MAX_GAP, MAX_RUN, BackupSource, Wanted
from pgharbor.storage import open_storage
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import index_key, pack_key, partition_key
from pgharbor.storage.memory import MemoryStorage

PACK = "a" * 32


@pytest.fixture
def storages() -> Iterator[list[Storage]]:
    MemoryStorage.reset()
    yield [open_storage("memory://one"), open_storage("memory://two")]
    MemoryStorage.reset()


def _index(storage: Storage, pack: str, entries: list[tuple[bytes, int, int]]) -> None:
    size = max(o + n for _, o, n in entries)
    doc = {
        "format": "pgharbor-chunk-index/1",
        "pack": pack,
        "size": size,
        "chunks": [[c.hex(), o, n, 65536] for c, o, n in entries],
    }
    storage.put(pack_key(pack), b"\0" * size)
    storage.put(index_key(pack), zstd().ZstdCompressor().compress(json.dumps(doc).encode()))
    storage.put(partition_key("c1", pack), pack.encode())


def test_runs_split_at_gaps_and_at_their_size_limit(storages: list[Storage]) -> None:
    one = storages[0]
    ids = [os.urandom(32) for _ in range(4000)]
    entries, at = [], 0
    for i, cid in enumerate(ids):
        if i == 500:
            at += MAX_GAP - 1000  # a gap narrow enough to read through
        if i == 1000:
            at += MAX_GAP + 1  # a gap too wide to read through
        entries.append((cid, at, 2000))
        at += 2000
    _index(one, PACK, entries)
    source = BackupSource([("one", one)], partition="c1")
    try:
        wanted = [Wanted(c, "f") for c in reversed(ids)]  # in any order
        runs, alone = source.runs(wanted)
    finally:
        source.close()
    assert not alone
    got = [w.cid for r in runs for w, _ in r.items]
    assert sorted(got) == sorted(ids)  # each exactly once
    for r in runs:
        offsets = [loc.offset for _, loc in r.items]
        assert offsets == sorted(offsets)
        assert r.end - r.start <= MAX_RUN
        assert all(b - a <= MAX_GAP + 2000 for a, b in itertools.pairwise(offsets))
    starts = sorted(r.start for r in runs)
    assert entries[1000][1] in starts  # the gap starts a new run
    # 1,000 chunks (2.26 MB with the narrow gap) before the wide gap: one run; 3,000 (6 MB) after it: two runs, as a
    # run holds at most MAX_RUN // 2000 = 2,097 of them
    assert [len(r.items) for r in sorted(runs, key=lambda r: r.start)] == [1000, 2097, 903]


def test_each_chunk_comes_from_the_first_placement_that_has_it(storages: list[Storage]) -> None:
    one, two = storages
    shared, only_two = os.urandom(32), os.urandom(32)
    _index(one, PACK, [(shared, 0, 100)])
    _index(two, "b" * 32, [(shared, 0, 100), (only_two, 100, 100)])
    source = BackupSource([("one", one), ("two", two)], partition="c1")
    try:
        runs, alone = source.runs(
            [Wanted(shared, "f"), Wanted(only_two, "f"), Wanted(b"x" * 32, "g")]
        )
    finally:
        source.close()
    where = {w.cid: r.source.name for r in runs for w, _ in r.items}
    assert where == {shared: "one", only_two: "two"}
    assert [w.cid for w in alone] == [b"x" * 32]
