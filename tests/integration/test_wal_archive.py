"""The whole WAL path on a real PostgreSQL 15: archive_command -> targets ->
restore_command, with the pgharbor command line run as the postgres OS user."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor, count_rows
from tests.fixtures.postgres import PgCluster, PgFactory, server_dir

pytestmark = pytest.mark.integration


def _stored(root: Path, cluster: str = "c1") -> set[str]:
    return {p.name for p in (root / cluster / "wal").rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_archive_under_load_to_two_targets_and_fetch_back(
    harbor: Harbor, pg_cluster: PgCluster, workdir: Path, mode: str
) -> None:
    t1, t2 = harbor.target("t1"), harbor.target("t2")
    harbor.register(pg_cluster, "c1", "t1", "t2")
    ref = workdir / "postgres-bytes"
    harbor.archive_to(pg_cluster, keep_copy=ref, mode=mode)
    pg_cluster.pgbench_init(scale=4)
    pg_cluster.pgbench(seconds=5, clients=2)
    last = pg_cluster.switch_wal()
    pg_cluster.wait_for_archived(last, timeout=120)

    stats = pg_cluster.archiver_stats()
    assert stats["failed_count"] == 0, stats
    archived = {p.name for p in ref.iterdir()}
    assert len(archived) >= 3 and last in archived
    # every archived file is in the catalog (async mode sends rows in batches: wait for it)
    pg_cluster.wait_until("the catalog", lambda: set(harbor.wal_files()) == archived, 30, str)
    files = harbor.wal_files()
    for f in files.values():
        assert sorted(c["target"] for c in f["copies"] if c["status"] == "ok") == ["t1", "t2"]
        assert f["missing"] == []
    assert _stored(t1) == _stored(t2) == archived  # ...and on both targets

    out = server_dir(workdir / "out")
    for name in sorted(archived):
        harbor.run("wal", "fetch", "c1", name, str(out / name))
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name

    shutil.rmtree(t1 / "c1" / "wal")  # the first-priority target loses everything
    for name in sorted(archived):
        dest = out / f"{name}.again"
        harbor.run("wal", "fetch", "c1", name, str(dest))
        assert dest.read_bytes() == (ref / name).read_bytes(), name


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_standby_replays_from_the_archive(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path, mode: str
) -> None:
    harbor.target("t1")
    primary = pg_factory("primary")
    harbor.register(primary, "c1", "t1")
    harbor.archive_to(primary, mode=mode)
    primary.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
    backup = primary.basebackup(workdir / "standby" / "data", "-X", "none")
    for i in range(1, 6):
        primary.execute(
            "INSERT INTO t SELECT g, 'row' FROM generate_series(%s::int, %s::int) g",
            (i * 1000, i * 1000 + 999),
        )
        primary.switch_wal()
    primary.execute("INSERT INTO t VALUES (1, 'last committed row')")
    last = primary.switch_wal()
    primary.wait_for_archived(last, timeout=120)
    expected = primary.sql_one("SELECT count(*) FROM t")

    standby = harbor.archive_standby(pg_factory, backup)
    standby.wait_until(
        "replay of the archive",
        lambda: count_rows(standby, "t") == expected,
        120,
        lambda: standby.log_tail(),
    )
    assert standby.is_in_recovery()
    assert standby.sql_one("SELECT note FROM t WHERE id = 1") == "last committed row"
    # replay was fed by the prefetcher, which worked ahead of PostgreSQL's requests
    log = (backup / "pg_wal" / "pgharbor-prefetch" / "prefetch.log").read_text()
    assert "prefetcher for c1" in log


def test_refusals_on_real_wal(harbor: Harbor, pg_factory: PgFactory, workdir: Path) -> None:
    t1 = harbor.target("t1")
    a, b = pg_factory("a"), pg_factory("b")
    harbor.register(a, "c1", "t1")
    harbor.register(b, "c2", "t1")
    seg_b = b.switch_wal()
    src = server_dir(workdir / "src")
    shutil.copy(b.pgdata / "pg_wal" / seg_b, src / seg_b)
    (src / seg_b).chmod(0o644)
    # b's real segment pushed as a's: refused, nothing stored
    line = harbor.fails("wal", "push", "c1", str(src / seg_b), code=8)
    assert "another cluster" in line
    assert not (t1 / "c1" / "wal").exists()
    # truncated copy of a real segment
    (src / "trunc").mkdir()
    (src / "trunc" / seg_b).write_bytes((src / seg_b).read_bytes()[:1_000_000])
    (src / "trunc").chmod(0o755)
    assert "truncated" in harbor.fails("wal", "push", "c2", str(src / "trunc" / seg_b), code=8)
    assert not (t1 / "c2" / "wal").exists()
    # the real one is accepted for its own cluster, and comes back
    harbor.run("wal", "push", "c2", str(src / seg_b))
    assert _stored(t1, "c2") == {seg_b}
    # garbage names, traversal, unknown cluster
    assert "not a WAL file name" in harbor.fails("wal", "push", "c2", "/etc/passwd", code=2)
    assert "not a WAL file name" in harbor.fails(
        "wal", "fetch", "c2", "../../etc/passwd", str(src / "x"), code=2
    )
    assert "no cluster named" in harbor.fails("wal", "push", "nope", str(src / seg_b))
    assert not (src / "x").exists()
    # not archived: exit 1, the normal end of recovery
    assert (
        harbor.run("wal", "fetch", "c2", "00000009.history", str(src / "h"), check=False).returncode
        == 1
    )


def test_unwritable_target_keeps_wal_then_resumes(
    harbor: Harbor, pg_cluster: PgCluster, workdir: Path
) -> None:
    t1 = harbor.target("t1")
    harbor.register(pg_cluster, "c1", "t1")
    harbor.archive_to(pg_cluster)
    first = pg_cluster.switch_wal()
    pg_cluster.wait_for_archived(first)
    folders = [t1, *(p for p in t1.rglob("*") if p.is_dir())]
    for d in folders:
        d.chmod(0o555)  # the postgres user may no longer write there
    if not _is_server_user_blocked(harbor, t1):
        pytest.skip("cannot make a folder unwritable for the server user here")
    pending = pg_cluster.switch_wal()
    pg_cluster.wait_until(
        "archive failures",
        lambda: pg_cluster.archiver_stats()["failed_count"] > 0,
        60,
        lambda: str(pg_cluster.archiver_stats()),
    )
    assert (pg_cluster.pgdata / "pg_wal" / "archive_status" / f"{pending}.ready").exists()
    assert "permission denied" in pg_cluster.log_tail(200).lower()
    for d in folders:
        d.chmod(0o755)
    pg_cluster.wait_for_archived(pending, timeout=120)  # resumes by itself
    assert pending in _stored(t1)


def _is_server_user_blocked(harbor: Harbor, folder: Path) -> bool:
    import subprocess

    from tests.fixtures.postgres import IS_ROOT, SERVER_USER

    cmd = ["test", "-w", str(folder)]
    if IS_ROOT:
        cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
    return subprocess.run(cmd, check=False).returncode != 0


def test_catalog_down_archiving_goes_on_then_journal_replayed(
    harbor: Harbor, pg_cluster: PgCluster, workdir: Path
) -> None:
    t1 = harbor.target("t1")
    harbor.register(pg_cluster, "c1", "t1")
    harbor.archive_to(pg_cluster)
    pg_cluster.wait_for_archived(pg_cluster.switch_wal())  # cache of placements now filled
    catalog = workdir / "catalog.db"
    catalog.rename(workdir / "catalog.away")
    during = [pg_cluster.switch_wal() for _ in range(3)]
    pg_cluster.wait_for_archived(during[-1])
    assert pg_cluster.archiver_stats()["failed_count"] == 0
    assert set(during) <= _stored(t1)
    journal = harbor.state_dir / "journal" / "c1.jsonl"
    assert len(journal.read_text().splitlines()) == 3
    (workdir / "catalog.away").rename(catalog)
    after = pg_cluster.switch_wal()
    pg_cluster.wait_for_archived(after)
    files = harbor.wal_files()
    assert set(during) | {after} <= set(files)
    assert all(len(files[n]["copies"]) == 1 for n in files)  # never doubled
    assert journal.read_text() == ""
