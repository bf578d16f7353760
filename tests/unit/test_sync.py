"""wal sync: missing copies are filled from another placement, verified, recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

from pgharbor.archive.fetch import fetch
from pgharbor.archive.push import push
from pgharbor.archive.sync import sync
from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import history, segment

NAMES = [f"00000001000000000000000{i}" for i in range(1, 5)]


def test_sync_fills_the_copies_a_down_target_missed(tmp_path: Path) -> None:
    env = Env(tmp_path)
    push(env.settings, "c1", env.wal(NAMES[0], segment(NAMES[0], SYSID)))
    away = tmp_path / "t1-away"
    env.roots[0].rename(away)  # t1 goes away; pushes go on to t2
    for n in NAMES[1:]:
        push(env.settings, "c1", env.wal(n, segment(n, SYSID)))
    push(env.settings, "c1", env.wal("00000002.history", history()))
    away.rename(env.roots[0])  # back, having lost its first file meanwhile
    shutil.rmtree(env.roots[0] / "c1" / "wal")
    missing = {f.name for f in env.cat.wal_files("c1") if f.missing}
    assert missing == set(NAMES[1:]) | {"00000002.history"}

    r = sync(env.settings, "c1")
    assert r.copied == {"t1": 5} and r.failed == [] and r.files == 5  # t1 lost its first file too
    assert env.stored(env.roots[0]) == env.stored(env.roots[1])
    assert not [f for f in env.cat.wal_files("c1") if f.missing]

    shutil.rmtree(env.roots[1] / "c1" / "wal")  # only t1's copies are left: all come back
    for n in NAMES:
        out = tmp_path / f"out-{n}"
        assert fetch(env.settings, "c1", n, str(out)).target == "t1"
        assert out.read_bytes() == (tmp_path / "pg_wal" / n).read_bytes()
    assert sync(env.settings, "c1").copied == {"t2": 5}  # and back the other way
    assert sync(env.settings, "c1").copied == {}  # nothing left to do


def test_sync_skips_a_corrupt_source_copy(tmp_path: Path) -> None:
    env = Env(tmp_path)
    path = env.wal(NAMES[0], segment(NAMES[0], SYSID))
    push(env.settings, "c1", path)
    shutil.rmtree(env.roots[1] / "c1" / "wal")
    stored = env.roots[0] / "c1" / "wal" / "0000000100000000" / NAMES[0]
    stored.write_bytes(stored.read_bytes()[:-10])  # the only copy is damaged
    r = sync(env.settings, "c1")
    assert r.copied == {} and len(r.failed) == 1 and "no good copy" in r.failed[0]
    assert env.stored(env.roots[1]) == []  # nothing bad was spread


def test_sync_records_stored_copies_the_catalog_lost(tmp_path: Path) -> None:
    import sqlite3

    env = Env(tmp_path)
    for n in NAMES[:3]:
        push(env.settings, "c1", env.wal(n, segment(n, SYSID)))
    (env.roots[1] / "c1" / "wal" / NAMES[2][:16] / NAMES[2]).write_bytes(b"damaged")
    with sqlite3.connect(tmp_path / "catalog.db") as db:  # rows lost (a torn journal record)
        db.execute("DELETE FROM wal_copies WHERE name <> ?", (NAMES[0],))
    r = sync(env.settings, "c1")
    assert r.recorded == 3  # NAMES[1] on both targets, NAMES[2] on t1; the damaged one is not
    assert any(NAMES[2] in f and "not recorded" in f for f in r.failed)
    assert env.copies() == {
        NAMES[0]: [("t1", "ok"), ("t2", "ok")],
        NAMES[1]: [("t1", "ok"), ("t2", "ok")],
        NAMES[2]: [("t1", "ok")],
    }
