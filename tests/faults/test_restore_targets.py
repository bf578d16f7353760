"""Restore targets the archive cannot reach are refused before anything is written, named
restore points are indexed (made by pgharbor or with plain SQL, found in the archived
WAL with pg_waldump), and a restored copy does not archive into production unless told to.

One primary for the module: backup b1, rows, a restore point made with `pgharbor
restore-point create`, rows, one made with plain SQL, rows, backup b2 (after both
points: restoring to either from b2 is impossible), rows."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, server_dir

pytestmark = pytest.mark.integration


@dataclass
class Archive:
    base: Path
    harbor: Harbor
    primary: PgCluster
    backups: list[str] = field(default_factory=list)
    lsn: dict[str, str] = field(default_factory=dict)
    clusters: list[PgCluster] = field(default_factory=list)

    def pgdata(self, name: str) -> Path:
        return server_dir(self.base / name) / "data"

    def copy(self, name: str) -> PgCluster:
        pg = PgCluster.from_datadir(self.base / name / "data", self.base / f"{name}-run")
        self.clusters.append(pg)
        return pg


def _rows(pg: PgCluster) -> int:
    return int(pg.sql_one("SELECT count(*) FROM t"))


def _insert(pg: PgCluster, lo: int, hi: int) -> None:
    pg.execute("INSERT INTO t SELECT generate_series(%s::int, %s::int)", (lo, hi))


@pytest.fixture(scope="module")
def archive() -> Iterator[Archive]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-targets-", dir="/tmp"))
    harbor = Harbor(base)
    harbor.run("init")
    harbor.target("t1")
    primary = PgCluster(base / "primary", name="primary").initdb()
    primary.start()
    a = Archive(base, harbor, primary)
    try:
        harbor.register(primary, "c1", "t1")
        harbor.archive_to(primary)
        primary.execute("CREATE TABLE t (a int)")
        _insert(primary, 1, 100)
        harbor.run("backup", "create", "c1")
        _insert(primary, 101, 200)
        out = harbor.run("restore-point", "create", "c1", "rp_created").stdout
        m = re.search(r"LSN (\S+) on timeline 1", out)
        assert m, out
        a.lsn["rp_created"] = m.group(1)
        _insert(primary, 201, 300)
        a.lsn["rp_sql"] = str(primary.sql_one("SELECT pg_create_restore_point('rp_sql')"))
        _insert(primary, 301, 400)
        harbor.run("backup", "create", "c1")
        _insert(primary, 401, 500)
        primary.wait_for_archived(primary.switch_wal(), timeout=120)
        a.backups = [b["id"] for b in harbor.json("backup", "list", "c1")]
        yield a
    finally:
        for pg in [*a.clusters, primary]:
            with contextlib.suppress(Exception):
                pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def test_list_finds_created_and_sql_restore_points(archive: Archive) -> None:
    points = archive.harbor.json("restore-point", "list", "c1")
    assert [(p["name"], p["lsn"], p["timeline"], p["source"]) for p in points] == [
        ("rp_created", archive.lsn["rp_created"], 1, "created"),
        ("rp_sql", archive.lsn["rp_sql"], 1, "wal"),  # the LSN pg_create_restore_point gave
    ]
    assert points[0]["time"] and points[1]["time"] is None
    again = archive.harbor.json("restore-point", "list", "c1")  # incremental: no duplicates
    assert again == points
    text = archive.harbor.run("restore-point", "list", "c1").stdout
    assert "rp_sql" in text and archive.lsn["rp_sql"] in text


@pytest.mark.parametrize(("name", "rows"), [("rp_created", 200), ("rp_sql", 300)])
def test_target_name_restores_from_the_backup_before_it(
    archive: Archive, name: str, rows: int
) -> None:
    out = archive.harbor.run(
        "restore", "c1", "--pgdata", str(archive.pgdata(name)), "--target-name", name
    ).stdout
    assert f"restored backup {archive.backups[0]} " in out  # not the newest, b2
    pg = archive.copy(name)
    pg.start()
    pg.wait_for_recovery_end(timeout=120)
    assert _rows(pg) == rows
    pg.stop()


def test_unknown_restore_point_is_refused(archive: Archive) -> None:
    dest = archive.pgdata("unknown")
    line = archive.harbor.fails("restore", "c1", "--pgdata", str(dest), "--target-name", "nope")
    assert "no restore point named 'nope'" in line and "restore-point list c1" in line
    assert not dest.exists()
    line = archive.harbor.fails("restore-point", "create", "c1", "x" * 64)
    assert "1 to 63 bytes" in line


def test_target_time_after_the_archive_is_refused(archive: Archive) -> None:
    dest = archive.pgdata("future")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    line = archive.harbor.fails("restore", "c1", "--pgdata", str(dest), "--target-time", later)
    last = max(f for f in archive.harbor.wal_files() if len(f) == 24)
    assert "after the end of the archive" in line and last in line and "pg_switch_wal" in line
    assert not dest.exists()


def test_preserve_keeps_production_archiving(archive: Archive) -> None:
    out = archive.harbor.run(
        "restore",
        "c1",
        "--pgdata",
        str(archive.pgdata("preserve")),
        "--archive-mode",
        "preserve",
        "--target-immediate",
        "--target-action",
        "pause",
    ).stdout
    assert "archive_mode preserved" in out
    pg = archive.copy("preserve")
    pg.start()  # paused in recovery at the backup's end: nothing is archived
    assert pg.sql_one("SHOW archive_mode") == "on"
    assert "wal push c1" in pg.sql_one("SHOW archive_command")
    pg.stop()


def test_standby_keeps_production_archiving_by_default(archive: Archive) -> None:
    dest = archive.pgdata("standby")
    out = archive.harbor.run("restore", "c1", "--pgdata", str(dest), "--standby").stdout
    assert "archive_mode preserved" in out
    section = (dest / "postgresql.auto.conf").read_text().split("# pgharbor restore")[1]
    assert "archive_mode" not in section and (dest / "standby.signal").exists()


def test_default_copy_archives_nothing_into_production(archive: Archive) -> None:
    """Last in the module: a mistake here would put a timeline 2 into the archive."""
    out = archive.harbor.run("restore", "c1", "--pgdata", str(archive.pgdata("off"))).stdout
    assert "archive_mode = off" in out
    pg = archive.copy("off")
    pg.start()
    pg.wait_for_recovery_end(timeout=120)  # promoted: timeline 2
    assert _rows(pg) == 500
    _insert(pg, 501, 600)
    pg.switch_wal()
    mode = pg.sql_one("SHOW archive_mode")
    pg.stop()  # a server that archives tries every ready file before it exits
    assert not [f for f in archive.harbor.wal_files() if not f.startswith("00000001")]
    wal = archive.base / "targets" / "t1" / "c1" / "wal"
    assert not [p.name for p in wal.rglob("*") if p.is_file() and not p.name.startswith("00000001")]
    assert mode == "off"
