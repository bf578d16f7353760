"""The storage conformance suite: every backend runs exactly these tests."""

from __future__ import annotations

import os
import threading

import pytest

from pgharbor.errors import (
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
    UsageError,
)
from tests.fixtures.storage_kits import BackendKit


def test_put_get_roundtrip(kit: BackendKit) -> None:
    s = kit.make()
    s.put("c1/wal/0000000100000000/000000010000000000000001", b"hello")
    assert s.get("c1/wal/0000000100000000/000000010000000000000001") == b"hello"
    assert s.exists("c1/wal/0000000100000000/000000010000000000000001")
    info = s.stat("c1/wal/0000000100000000/000000010000000000000001")
    assert info is not None and info.size == 5


def test_missing_object(kit: BackendKit) -> None:
    s = kit.make()
    assert s.stat("nope/x") is None
    assert not s.exists("nope/x")
    with pytest.raises(ObjectNotFound):
        s.get("nope/x")
    s.delete("nope/x")  # deleting a missing object is fine


def test_get_range(kit: BackendKit) -> None:
    s = kit.make()
    s.put("a/b", bytes(range(256)) * 4)
    assert s.get_range("a/b", 10, 5) == bytes(range(10, 15))
    assert s.get_range("a/b", 1020, 100) == bytes(range(252, 256))


def test_overwrite_and_no_overwrite(kit: BackendKit) -> None:
    s = kit.make()
    s.put("k", b"one")
    s.put("k", b"two")
    assert s.get("k") == b"two"
    with pytest.raises(ObjectExists):
        s.put("k", b"three", overwrite=False)
    assert s.get("k") == b"two"
    s.put("fresh", b"x", overwrite=False)
    assert s.get("fresh") == b"x"


def test_idempotent_reput(kit: BackendKit) -> None:
    s = kit.make()
    for _ in range(3):
        s.put("same/key", b"payload")
    assert [o.key for o in s.list("same/")] == ["same/key"]
    assert s.get("same/key") == b"payload"


def test_list_many_sorted_with_prefix(kit: BackendKit) -> None:
    s = kit.make()
    keys = [f"c/wal/g{i % 3}/f{i:04d}" for i in range(1200)]
    for k in keys:
        s.put(k, k.encode())
    s.put("other/x", b"1")
    listed = list(s.list("c/"))
    assert [o.key for o in listed] == sorted(keys)
    assert all(o.size == len(o.key) for o in listed)
    assert [o.key for o in s.list("c/wal/g1/")] == sorted(k for k in keys if "/g1/" in k)
    assert [o.key for o in s.list("c/wal/g1/f000")] == [
        "c/wal/g1/f0001",
        "c/wal/g1/f0004",
        "c/wal/g1/f0007",
    ]
    assert list(s.list("absent/")) == []


def test_delete(kit: BackendKit) -> None:
    s = kit.make()
    s.put("d/1", b"1")
    s.put("d/2", b"2")
    s.delete("d/1")
    assert not s.exists("d/1")
    assert [o.key for o in s.list("d/")] == ["d/2"]


def test_large_object(kit: BackendKit) -> None:
    s = kit.make()
    data = os.urandom(20 * 1024 * 1024 + 123)
    s.put("big/obj", data)
    assert s.get("big/obj") == data
    info = s.stat("big/obj")
    assert info is not None and info.size == len(data)


def test_atomic_put_under_concurrency(kit: BackendKit) -> None:
    """Writers race on one key; readers only ever see one complete version."""
    s = kit.make()
    versions = [bytes([i]) * (2 * 1024 * 1024) for i in range(4)]
    s.put("race/key", versions[0])
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                got = s.get("race/key")
            except StorageError as exc:
                bad.append(f"error {exc}")
                continue
            if got not in versions:
                bad.append(f"torn read of {len(got)} bytes")

    def writer(v: bytes) -> None:
        for _ in range(3):
            s.put("race/key", v)

    r = threading.Thread(target=reader)
    r.start()
    ws = [threading.Thread(target=writer, args=(v,)) for v in versions]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    r.join()
    assert bad == []
    assert s.get("race/key") in versions
    assert [o.key for o in s.list("race/")] == ["race/key"]


def test_exclusive_put_has_one_winner(kit: BackendKit) -> None:
    s = kit.make()
    results: list[str] = []

    def attempt(i: int) -> None:
        try:
            s.put("once/key", f"v{i}".encode(), overwrite=False)
            results.append("won")
        except ObjectExists:
            results.append("exists")

    ts = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results.count("won") == 1
    assert s.get("once/key") in {f"v{i}".encode() for i in range(4)}


def test_bad_keys_refused(kit: BackendKit) -> None:
    s = kit.make()
    for key in ["../escape", "/abs", "a//b", "a/./b", "", "a/.pgharbor-tmp.x"]:
        with pytest.raises(UsageError) as ei:
            s.put(key, b"x")
        assert "invalid storage key" in str(ei.value)


def test_unreachable(kit: BackendKit) -> None:
    s = kit.make_unreachable()
    if s is None:
        pytest.skip(f"{kit.name}: no network endpoint to be unreachable")
    with pytest.raises(StorageUnavailable):
        s.put("x/y", b"data")
    with pytest.raises(StorageUnavailable):
        s.stat("x/y")


def test_permission_denied(kit: BackendKit) -> None:
    s = kit.make_denied()
    if s is None:
        pytest.skip(f"{kit.name}: no permission model in this test setting")
    with pytest.raises(StoragePermissionDenied):
        s.put("x/y", b"data")


def test_wrong_credentials(kit: BackendKit) -> None:
    s = kit.make_bad_credentials()
    if s is None:
        pytest.skip(f"{kit.name}: no credentials")
    with pytest.raises(StoragePermissionDenied):
        s.put("x/y", b"data")


def test_unknown_host_key(kit: BackendKit) -> None:
    s = kit.make_unknown_hostkey()
    if s is None:
        pytest.skip(f"{kit.name}: no host keys")
    with pytest.raises(StorageError) as ei:
        s.put("x/y", b"data")
    assert "host key" in str(ei.value)


def test_sweep_removes_what_killed_writers_left(kit: BackendKit) -> None:
    s = kit.make()
    s.put("w/a/obj", b"kept")
    if not kit.leftover(s, "w/a/lost", alive=False):
        pytest.skip(f"{kit.name}: a put leaves nothing behind")
    kit.leftover(s, "w/a/busy", alive=True)  # a write still in progress
    kit.leftover(s, "other/x", alive=False)
    assert [o.key for o in s.list("")] == ["w/a/obj"]  # leftovers are never objects
    if kit.by_writer:
        assert s.sweep("w/") == 1  # the dead writer's, at once; the busy one stays
        assert s.sweep("w/") == 0
        assert s.sweep("w/", max_age=0) == 1  # a "write in progress" that old is dead too
    else:
        assert s.sweep("w/") == 0  # young uploads may still complete
        assert s.sweep("w/", max_age=0) == 2
    assert s.sweep("w/", max_age=0) == 0
    assert s.sweep("other/", max_age=0) == 1  # only below the prefix
    assert s.get("w/a/obj") == b"kept"
    assert [o.key for o in s.list("")] == ["w/a/obj"]


def test_durability_and_space_are_reported(kit: BackendKit) -> None:
    s = kit.make()
    assert s.durable() is (kit.name != "memory")  # file fsyncs, sshd has fsync@openssh.com
    space = s.space()
    if kit.name in ("file", "ssh"):  # the medium reports its size (statvfs)
        assert space is not None and space[0] >= space[1] >= 0 and space[0] > 0
    else:
        assert space is None
