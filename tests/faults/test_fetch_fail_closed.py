"""Recovery never ends short, end to end on PostgreSQL 15: a restore to the end of the
archive with a malformed copy of every segment on the first target replays every archived
segment from the second (and says so in PostgreSQL's log); with no good copy anywhere the
server stops with FATAL instead of promoting, and resumes once a good copy is back."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor, count_rows
from tests.fixtures.postgres import IS_ROOT, SERVER_USER, PgCluster, PgFactory, server_dir
from tests.fixtures.tamper import rewrite_header, wal_objects

pytestmark = pytest.mark.integration

MARKS = 5


def _archive_with_marks(harbor: Harbor, pg: PgCluster) -> tuple[Path, Path]:
    t1, t2 = harbor.target("t1"), harbor.target("t2")
    harbor.register(pg, "c1", "t1", "t2")
    harbor.archive_to(pg)
    pg.execute("CREATE TABLE marks (n int)")
    harbor.run("backup", "create", "c1")
    for n in range(1, MARKS + 1):  # each mark in a segment of its own
        pg.execute("INSERT INTO marks VALUES (%s)", (n,))
        pg.wait_for_archived(pg.switch_wal(), timeout=60)
    return t1, t2


def _restore(harbor: Harbor, pg_factory: PgFactory, workdir: Path, name: str) -> PgCluster:
    dest = server_dir(workdir / name) / "data"
    harbor.run("restore", "c1", "--pgdata", str(dest))
    return pg_factory.from_datadir(dest, name, archive_mode=False)


def test_a_malformed_first_copy_never_shortens_recovery(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    primary = pg_factory()
    t1, _ = _archive_with_marks(harbor, primary)
    for seg in wal_objects(t1):
        rewrite_header(seg, size="abc")  # every copy on the first target is malformed
    restored = _restore(harbor, pg_factory, workdir, "r1")
    restored.start()
    restored.wait_for_recovery_end(timeout=120)
    assert count_rows(restored, "marks") == MARKS  # every archived segment was replayed
    log = restored.log_tail(400)
    assert "pgharbor: warning:" in log and "object header is corrupt" in log
    assert "internal error" not in log
    restored.stop()


def test_no_good_copy_stops_recovery_with_fatal(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    primary = pg_factory()
    t1, t2 = _archive_with_marks(harbor, primary)
    victim = wal_objects(t1)[-2]  # the segment holding the last marks
    kept = workdir / "kept"
    shutil.copy(t2 / victim.relative_to(t1), kept)
    for root in (t1, t2):
        rewrite_header(root / victim.relative_to(t1), size=10**30)
    restored = _restore(harbor, pg_factory, workdir, "r2")
    restored.start(wait=False)
    deadline = time.monotonic() + 120
    while "FATAL" not in restored.log_tail(400) and time.monotonic() < deadline:
        time.sleep(0.2)
    restored.wait_until_stopped(timeout=60)
    log = restored.log_tail(400)
    assert "stopping recovery rather than ending it early" in log
    assert "FATAL" in log and "selected new timeline ID" not in log  # never promoted
    state = restored.controldata()["Database cluster state"]
    assert state == "in archive recovery"
    shutil.copy(kept, t2 / victim.relative_to(t1))  # a good copy is back: restart resumes
    restored.start()
    restored.wait_for_recovery_end(timeout=120)
    assert count_rows(restored, "marks") == MARKS
    restored.stop()


@pytest.mark.skipif(not IS_ROOT, reason="needs a folder the server's OS user cannot read")
def test_an_unreadable_prefetch_folder_is_only_a_warning(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    """EACCES in pg_wal/pgharbor-prefetch (a root-owned 0700 folder): recovery still
    replays everything through plain fetches, and says why in the log."""
    primary = pg_factory()
    _archive_with_marks(harbor, primary)
    restored = _restore(harbor, pg_factory, workdir, "r3")
    cache = restored.pgdata / "pg_wal" / "pgharbor-prefetch"
    cache.mkdir(mode=0o700)  # owned by root: the postgres OS user cannot use it
    assert SERVER_USER != "root"
    restored.start()
    restored.wait_for_recovery_end(timeout=120)
    assert count_rows(restored, "marks") == MARKS
    assert "prefetch" in restored.log_tail(400)
    restored.stop()
