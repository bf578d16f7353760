"""Chunk store leases: shared leases coexist, a GC lease excludes everything, a dead
holder (gone process, or expired) never blocks, and check() refuses a lost lease."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from pgharbor.backup import lease as leases
from pgharbor.backup.lease import Lease, LeaseGroup, read_leases, refuse_root
from pgharbor.errors import Busy, LeaseLost, UsageError
from pgharbor.storage import open_storage
from pgharbor.storage.base import Storage
from pgharbor.storage.memory import MemoryStorage


@pytest.fixture
def storage() -> Iterator[Storage]:
    MemoryStorage.reset()
    yield open_storage("memory://leases")
    MemoryStorage.reset()


def _plant(storage: Storage, name: str, **fields: object) -> str:
    d: dict[str, object] = {
        "format": leases.FORMAT,
        "kind": "backup",
        "owner": "backup c9/planted",
        "host": leases.HOST,
        "boot_id": leases.BOOT_ID,
        "pid": 1,
        "pid_start": "",
        "acquired": time.time(),
        "expires": time.time() + 600,
    }
    d.update(fields)
    key = f"{leases.PREFIX}{name}"
    storage.put(key, json.dumps(d).encode())
    return key


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_shared_leases_coexist_and_exclude_gc(storage: Storage) -> None:
    with Lease(storage, "backup", "backup c1/a"), Lease(storage, "restore", "restore c1/a"):
        assert len(read_leases(storage)) == 2
        with pytest.raises(Busy, match="backup lease of backup c1/a"):
            Lease(storage, "gc", "backup delete c1/b").acquire()
        assert len(read_leases(storage)) == 2  # the refused GC left nothing behind
    assert read_leases(storage) == []


def test_gc_lease_excludes_backups_and_other_gcs(storage: Storage) -> None:
    with Lease(storage, "gc", "backup delete c1/b") as gc:
        with pytest.raises(Busy, match="gc lease of backup delete c1/b"):
            Lease(storage, "backup", "backup c1/new").acquire()
        with pytest.raises(Busy):
            Lease(storage, "gc", "backup delete c2/x").acquire()
        gc.check()  # nobody challenged it
    with Lease(storage, "backup", "backup c1/new"):
        pass


def test_dead_holders_never_block(storage: Storage) -> None:
    gone = _plant(storage, "backup.gone", pid=_dead_pid())
    stale = _plant(
        storage,
        "backup.other-host",
        host="elsewhere",
        boot_id="x",
        expires=time.time() - leases.SKEW - 1,
    )
    with Lease(storage, "gc", "backup delete c1/b"):
        keys = [x.key for x in read_leases(storage)]
        assert gone not in keys and stale not in keys  # removed as dead


def test_live_holders_on_other_hosts_block_until_expired(storage: Storage) -> None:
    _plant(storage, "backup.remote", host="elsewhere", boot_id="x", pid=_dead_pid())
    with pytest.raises(Busy, match="host elsewhere"):
        Lease(storage, "gc", "gc").acquire()


def test_a_reused_pid_is_not_the_holder(storage: Storage) -> None:
    import os

    _plant(storage, "backup.reused", pid=os.getpid(), pid_start="1")  # our pid, other start
    with Lease(storage, "gc", "gc"):
        pass


def test_unreadable_lease_blocks_gc_only(storage: Storage) -> None:
    storage.put(f"{leases.PREFIX}gc.garbage", b"\x00not json")
    with pytest.raises(Busy, match="unreadable lease object"):
        Lease(storage, "gc", "gc").acquire()
    with Lease(storage, "backup", "backup c1/a"):
        pass


def test_check_refuses_a_lost_lease(storage: Storage) -> None:
    gc = Lease(storage, "gc", "gc").acquire()
    storage.delete(gc.key)
    with pytest.raises(LeaseLost, match="vanished"):
        gc.check()
    gc.release()

    gc = Lease(storage, "gc", "gc").acquire()
    gc.expires = time.time() - 1  # as if the process had been stalled past its expiry
    with pytest.raises(LeaseLost, match="expired"):
        gc.check()
    gc.release()

    gc = Lease(storage, "gc", "gc").acquire()
    _plant(storage, "backup.intruder", host="elsewhere", boot_id="x")  # saw gc as dead
    with pytest.raises(LeaseLost, match="challenged"):
        gc.check()
    gc.release()


def test_renewal_moves_the_expiry(storage: Storage) -> None:
    with Lease(storage, "backup", "backup c1/a", ttl=30, renew_every=0.05) as held:
        first = held.expires
        time.sleep(0.3)
        (info,) = read_leases(storage)
        assert isinstance(info, leases.LeaseInfo)
        assert info.expires > first and held.expires > first


def test_file_backend(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    storage = open_storage(f"file://{root}")
    with Lease(storage, "backup", "backup c1/a"):
        with pytest.raises(Busy):
            Lease(storage, "gc", "gc").acquire()
        assert len(list((root / "chunks" / "leases").iterdir())) == 1
    assert list((root / "chunks" / "leases").iterdir()) == []


def test_a_lapsed_lease_is_never_renewed(storage: Storage) -> None:
    """A holder stalled past its expiry may have been taken for dead: its renewal stops
    and check() refuses, even after the renewal thread woke up first."""
    held = Lease(storage, "backup", "backup c1/a", ttl=30, renew_every=0.05)
    held.acquire()
    try:
        held.expires = time.time() - 1  # as if the whole process had been stopped
        time.sleep(0.3)  # the renewal thread wakes first
        assert held.expires < time.time()  # it did not renew
        with pytest.raises(LeaseLost, match="expired"):
            held.check()
    finally:
        held.release()


def test_a_removed_lease_is_not_written_again(storage: Storage) -> None:
    held = Lease(storage, "gc", "gc", ttl=30, renew_every=0.05).acquire()
    try:
        storage.delete(held.key)  # someone saw it dead and removed it
        time.sleep(0.3)
        assert storage.stat(held.key) is None  # renewal did not bring it back
        with pytest.raises(LeaseLost, match="vanished"):
            held.check()
    finally:
        held.release()


def test_on_renew_is_the_heartbeat(storage: Storage) -> None:
    beats: list[float] = []

    def beat() -> None:
        beats.append(time.time())
        raise RuntimeError("catalog down")  # a failing heartbeat leaves the lease good

    with Lease(storage, "backup", "backup c1/a", renew_every=0.05, on_renew=beat) as held:
        time.sleep(0.3)
        held.check()
    assert len(beats) >= 2


def test_a_lease_group_is_all_or_nothing() -> None:
    MemoryStorage.reset()
    s1, s2 = open_storage("memory://g1"), open_storage("memory://g2")
    with Lease(s2, "backup", "backup c1/running"):
        group = LeaseGroup([Lease(s1, "gc", "gc"), Lease(s2, "gc", "gc")])
        with pytest.raises(Busy, match="backup lease of backup c1/running"):
            group.acquire()
        assert read_leases(s1) == []  # the lease taken on the first target was given back
    with LeaseGroup([Lease(s1, "gc", "gc"), Lease(s2, "gc", "gc")]) as group:
        group.check()
        assert len(read_leases(s1)) == len(read_leases(s2)) == 1
    assert read_leases(s1) == read_leases(s2) == []
    MemoryStorage.reset()


def test_refuse_root(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(UsageError, match="must not run as root") as info:
        refuse_root("backup create")
    assert "runuser -u postgres" in info.value.message
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    refuse_root("backup create")
