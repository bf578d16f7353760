"""A fleet can be changed once set up, on real PostgreSQL 15 and file targets: placements
taken out of service or removed (never below the required copies), a cluster pointed at
a new address (only the same cluster), a target reached at a new URL (only the same
storage), targets checked, the status screen, and a cluster removed (its files purged
only when asked and confirmed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgFactory

pytestmark = pytest.mark.integration


def test_placements_change_but_never_below_the_required_copies(
    harbor: Harbor, pg_factory: PgFactory
) -> None:
    for t in ("t1", "t2", "t3"):
        harbor.target(t)
    pg = pg_factory()
    harbor.register(pg, "c1", "t1", "t2", "t3")
    harbor.run("cluster", "set", "c1", "--required-copies", "2")
    harbor.run("placement", "set", "c1", "t3", "--inactive")
    line = harbor.fails("placement", "set", "c1", "t2", "--inactive", code=2)
    assert "requires 2 copies" in line and "1 active placement" in line
    assert harbor.fails("placement", "remove", "c1", "t1", code=2)
    harbor.run("placement", "set", "c1", "t3", "--priority", "0", "--active")
    assert [p["target"] for p in harbor.json("placement", "list", "c1")] == ["t3", "t1", "t2"]
    harbor.run("placement", "remove", "c1", "t3")  # 2 active left: allowed
    assert [p["target"] for p in harbor.json("placement", "list", "c1")] == ["t1", "t2"]
    assert (harbor.workdir / "targets" / "t3" / "c1" / "cluster.json").exists()  # files stay
    harbor.run("placement", "add", "c1", "t3", "--priority", "3")  # its claim is taken back


def test_a_cluster_moves_only_to_itself_and_a_target_only_to_its_storage(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    t1 = harbor.target("t1")
    pg, other = pg_factory(), pg_factory()
    harbor.register(pg, "c1", "t1")
    harbor.run("cluster", "set", "c1", "--dsn", pg.tcp_dsn)
    shown = harbor.json("cluster", "show", "c1")
    assert shown["host"] == "127.0.0.1" and shown["dsn"] == pg.tcp_dsn
    line = harbor.fails("cluster", "set", "c1", "--dsn", other.dsn, code=17)
    assert "system identifier" in line
    link = workdir / "t1-link"
    link.symlink_to(t1)
    harbor.run("target", "set", "t1", "--url", f"file://{link}")  # the same storage
    assert harbor.json("target", "list")[0]["url"] == f"file://{link}"
    elsewhere = harbor.target("t2")
    line = harbor.fails("target", "set", "t1", "--url", f"file://{elsewhere}")
    assert "is not the storage of target 't1'" in line


def test_targets_are_checked_and_the_status_shows_the_recoverable_window(
    harbor: Harbor, pg_factory: PgFactory
) -> None:
    t1 = harbor.target("t1")
    harbor.target("t2")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1", "t2")
    harbor.archive_to(pg)
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    harbor.run("backup", "create", "c1")
    last = pg.switch_wal()
    pg.wait_for_archived(last, timeout=60)
    checks = harbor.json("target", "check", "--all")
    assert [(c["target"], c["ok"], c["writable"], c["durable"]) for c in checks] == [
        ("t1", True, True, True),
        ("t2", True, True, True),
    ]
    assert all(c["free_bytes"] > 0 and c["clusters"][0]["ok"] for c in checks)
    (t1 / "c1" / "cluster.json").rename(t1 / "c1" / "cluster.json.away")
    line = harbor.fails("target", "check", "t1")
    assert "failed for t1" in line
    (t1 / "c1" / "cluster.json.away").rename(t1 / "c1" / "cluster.json")

    (st,) = harbor.json("status", "c1")
    backup = harbor.json("backup", "list", "c1")[-1]
    assert st["last_archived"] >= last and st["missing_copies"] == 0
    assert st["backups"]["usable"] == 1 and st["backups"]["newest"] == backup["id"]
    (window,) = st["windows"]
    assert window["timeline"] == 1 and window["start_lsn"] == backup["start_lsn"]
    assert window["end_segment"] >= last
    text = harbor.run("status").stdout
    assert "recoverable on timeline 1" in text and "c1:" in text


def test_a_cluster_is_removed_and_purged_only_when_confirmed(
    harbor: Harbor, pg_factory: PgFactory
) -> None:
    t1, t2 = harbor.target("t1"), harbor.target("t2")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1", "t2")
    harbor.archive_to(pg)
    harbor.run("backup", "create", "c1")
    pg.wait_for_archived(pg.switch_wal(), timeout=60)
    assert "still ships to t1, t2" in harbor.fails("cluster", "remove", "c1")
    harbor.run("cluster", "set", "c1", "--inactive")
    for t in ("t1", "t2"):
        harbor.run("placement", "set", "c1", t, "--inactive")
    assert "--yes" in harbor.fails("cluster", "remove", "c1", "--purge", code=2)
    assert (t1 / "c1").exists() and harbor.json("backup", "list", "c1")
    out = harbor.run("cluster", "remove", "c1", "--purge", "--yes").stdout
    assert "1 backups deleted" in out
    for root in (t1, t2):  # no file of c1 left (empty folders may stay: S3 has none)
        assert not [p for p in (root / "c1").rglob("*") if p.is_file()]
        assert not [p for p in (root / "chunks").rglob("*") if p.is_file()]
    assert harbor.json("cluster", "list") == []
