"""wal push / wal fetch against a SQLite catalog and real file targets, with synthetic
WAL (real WAL from a real server is in tests/integration)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pgharbor.archive.fetch import fetch
from pgharbor.archive.push import push
from pgharbor.errors import (
    ArchiveIncomplete,
    CatalogError,
    Conflict,
    StorageError,
    UsageError,
    WalNotArchived,
    WalValidationError,
)
from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import history, segment

SEG1 = "000000010000000000000001"


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_push_then_fetch_byte_identical(env: Env) -> None:
    data = segment(SEG1, SYSID)
    result = push(env.settings, "c1", env.wal(SEG1, data))
    assert [o.status for o in result.outcomes] == ["stored", "stored"]
    assert result.recorded_in == "catalog"
    assert env.stored(env.roots[0]) == env.stored(env.roots[1]) == [SEG1]
    assert env.copies() == {SEG1: [("t1", "ok"), ("t2", "ok")]}
    out = env.tmp / "restored"
    assert fetch(env.settings, "c1", SEG1, str(out)).target == "t1"
    assert out.read_bytes() == data
    # no temporary files left anywhere
    assert not [p for p in env.tmp.rglob("*") if "tmp" in p.name and p.is_file()]


def test_repush_identical_is_success_without_rewrite(env: Env) -> None:
    path = env.wal(SEG1, segment(SEG1, SYSID))
    push(env.settings, "c1", path)
    stored = env.roots[0] / "c1" / "wal" / "0000000100000000" / SEG1
    before = stored.stat()
    result = push(env.settings, "c1", path)
    assert [o.status for o in result.outcomes] == ["present", "present"]
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert env.copies() == {SEG1: [("t1", "ok"), ("t2", "ok")]}


def test_same_name_different_content_is_refused(env: Env) -> None:
    push(env.settings, "c1", env.wal(SEG1, segment(SEG1, SYSID)))
    stored = (env.roots[0] / "c1" / "wal" / "0000000100000000" / SEG1).read_bytes()
    with pytest.raises(Conflict, match="different content"):
        push(env.settings, "c1", env.wal(SEG1, segment(SEG1, SYSID)))
    assert (env.roots[0] / "c1" / "wal" / "0000000100000000" / SEG1).read_bytes() == stored


def test_history_file_never_overwritten(env: Env) -> None:
    push(env.settings, "c1", env.wal("00000002.history", history(1, "0/3000000")))
    push(env.settings, "c1", env.wal("00000002.history", history(1, "0/3000000")))
    with pytest.raises(Conflict):
        push(env.settings, "c1", env.wal("00000002.history", history(1, "0/4000000")))
    out = env.tmp / "h"
    fetch(env.settings, "c1", "00000002.history", str(out))
    assert out.read_bytes() == history(1, "0/3000000")


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (segment(SEG1, SYSID + 5), WalValidationError, "another cluster"),
        (segment(SEG1, SYSID)[: 8 * 1024 * 1024], WalValidationError, "truncated"),
        (os.urandom(16 * 1024 * 1024), WalValidationError, "magic"),
        (segment("000000010000000000000002", SYSID), WalValidationError, "page address"),
    ],
    ids=["foreign-sysid", "truncated", "garbage", "misnamed"],
)
def test_refusals_store_nothing(
    env: Env, data: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        push(env.settings, "c1", env.wal(SEG1, data))
    assert env.stored(env.roots[0]) == env.stored(env.roots[1]) == []
    assert env.copies() == {}


def test_bad_names_and_paths(env: Env) -> None:
    with pytest.raises(UsageError, match="not a WAL file name"):
        push(env.settings, "c1", env.wal("backup_label", b"x"))
    with pytest.raises(UsageError, match="does not exist"):
        push(env.settings, "c1", str(env.tmp / "pg_wal" / SEG1))
    for name in ["../../etc/passwd", "pg_wal/" + SEG1, SEG1 + "/..", "..", ""]:
        with pytest.raises(UsageError):
            fetch(env.settings, "c1", name, str(env.tmp / "out"))
    from pgharbor.errors import NotFound

    with pytest.raises(NotFound):
        push(env.settings, "nope", env.wal(SEG1, segment(SEG1, SYSID)))


def test_required_copies_and_unwritable_target(tmp_path: Path) -> None:
    env = Env(tmp_path, required=2)
    away = tmp_path / "t2-away"
    env.roots[1].rename(away)  # target 2's root is gone (unmounted): unwritable
    path = env.wal(SEG1, segment(SEG1, SYSID))
    with pytest.raises(ArchiveIncomplete, match="1 of 2 required copies"):
        push(env.settings, "c1", path)
    assert env.copies() == {SEG1: [("t1", "ok"), ("t2", "failed")]}
    env.roots[1].mkdir()  # an empty root in its place is not the target: still refused
    with pytest.raises(ArchiveIncomplete, match=r"cluster\.json is missing"):
        push(env.settings, "c1", path)
    assert not list(env.roots[1].iterdir())  # and nothing was written into it
    env.roots[1].rmdir()
    away.rename(env.roots[1])
    push(env.settings, "c1", path)  # PostgreSQL's retry succeeds once the target is back
    assert env.copies() == {SEG1: [("t1", "ok"), ("t2", "ok")]}
    assert env.stored(env.roots[1]) == [SEG1]


def test_one_copy_enough_when_one_target_down(env: Env) -> None:
    shutil.rmtree(env.roots[0])
    result = push(env.settings, "c1", env.wal(SEG1, segment(SEG1, SYSID)))
    assert [o.status for o in result.outcomes] == ["failed", "stored"]
    assert env.copies() == {SEG1: [("t1", "failed"), ("t2", "ok")]}
    assert env.cat.wal_files("c1")[0].missing == ["t1"]


def test_catalog_down_journal_then_replay(env: Env) -> None:
    push(env.settings, "c1", env.wal(SEG1, segment(SEG1, SYSID)))  # fills the local cache
    db = env.tmp / "catalog.db"
    db.rename(env.tmp / "catalog.away")
    names = [f"00000001000000000000000{i}" for i in (2, 3)]
    for n in names:
        r = push(env.settings, "c1", env.wal(n, segment(n, SYSID)))
        assert r.recorded_in == "journal" and r.copies == 2
    out = env.tmp / "fetched"
    fetch(env.settings, "c1", names[0], str(out))  # fetch works from the cache too
    assert out.read_bytes() == (env.tmp / "pg_wal" / names[0]).read_bytes()
    journal = Path(env.settings.state_dir) / "journal" / "c1.jsonl"
    assert len(journal.read_text().splitlines()) == 4
    (env.tmp / "catalog.away").rename(db)
    # the journal is replayed at the next contact; a re-push of an archived file
    # replays too, and nothing is doubled
    push(env.settings, "c1", env.wal(names[1], (env.tmp / "pg_wal" / names[1]).read_bytes()))
    assert journal.read_text() == ""
    assert env.copies() == {n: [("t1", "ok"), ("t2", "ok")] for n in [SEG1, *names]}
    from sqlalchemy import text

    with env.cat.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM wal_copies")).scalar() == 6


def test_catalog_down_without_cache_is_clear_error(env: Env) -> None:
    (env.tmp / "catalog.db").rename(env.tmp / "catalog.away")
    with pytest.raises(CatalogError, match="no cached placements"):
        push(env.settings, "c1", env.wal(SEG1, segment(SEG1, SYSID)))
    assert env.stored(env.roots[0]) == []


def test_fetch_falls_back_in_priority_order(env: Env) -> None:
    data = segment(SEG1, SYSID)
    push(env.settings, "c1", env.wal(SEG1, data))
    out = env.tmp / "out"
    shutil.rmtree(env.roots[0] / "c1" / "wal")  # first priority lost its files
    assert fetch(env.settings, "c1", SEG1, str(out)).target == "t2"
    assert out.read_bytes() == data
    # corrupt copy on the first target: detected, the next one is used
    push(
        env.settings,
        "c1",
        env.wal("000000010000000000000002", segment("000000010000000000000002", SYSID)),
    )
    p = env.roots[0] / "c1" / "wal" / "0000000100000000" / "000000010000000000000002"
    blob = bytearray(p.read_bytes())
    blob[-100] ^= 0x55
    p.write_bytes(bytes(blob))
    r = fetch(env.settings, "c1", "000000010000000000000002", str(out))
    assert r.target == "t2" and "corrupt" in r.skipped[0]
    assert out.read_bytes() == (env.tmp / "pg_wal" / "000000010000000000000002").read_bytes()


def test_fetch_missing_exit_1_and_no_good_copy(env: Env) -> None:
    with pytest.raises(WalNotArchived) as ei:
        fetch(env.settings, "c1", "00000005.history", str(env.tmp / "out"))
    assert ei.value.code == 1
    assert not (env.tmp / "out").exists()
    push(env.settings, "c1", env.wal(SEG1, segment(SEG1, SYSID)))
    for root in env.roots:
        p = root / "c1" / "wal" / "0000000100000000" / SEG1
        p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(StorageError, match="no good copy") as e2:
        fetch(env.settings, "c1", SEG1, str(env.tmp / "out"))
    assert e2.value.code != 1
    assert not (env.tmp / "out").exists()
