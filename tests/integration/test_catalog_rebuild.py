"""The catalog is an index that can be rebuilt: two backups with WAL in between, the
catalog file deleted, ``catalog rebuild`` from the two file targets; then, once the DSN
is given again, restores to a time, an LSN, a restore point (found again in the archived
WAL) and the end of the archive, each started as a real server, count exactly the rows
that existed at that point."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, server_dir

pytestmark = pytest.mark.integration


@dataclass
class Lost:
    base: Path
    harbor: Harbor
    primary: PgCluster
    roots: list[Path]
    marks: dict[str, str] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)  # what the catalog said
    rebuilt: dict[str, Any] = field(default_factory=dict)  # catalog rebuild --json
    clusters: list[PgCluster] = field(default_factory=list)

    def restore(self, name: str, *args: str) -> int:
        pgdata = self.base / name / "data"
        server_dir(pgdata.parent)
        self.harbor.run("restore", "c1", "--pgdata", str(pgdata), *args)
        pg = PgCluster.from_datadir(pgdata, self.base / name)
        pg.configure(archive_mode=False)
        self.clusters.append(pg)
        pg.start()
        pg.wait_for_recovery_end(timeout=120)
        rows = int(pg.sql_one("SELECT count(*) FROM tab_int"))
        pg.stop()
        return rows


def _insert(pg: PgCluster, lo: int, hi: int) -> None:
    pg.execute("INSERT INTO tab_int SELECT generate_series(%s::int, %s::int)", (lo, hi))


def _history(h: Harbor, lost: Lost) -> None:
    """Backup 1, rows (a time and an LSN noted), backup 2, rows and a restore point."""
    p = lost.primary
    p.execute("CREATE TABLE tab_int (a int)")
    _insert(p, 1, 1000)
    h.run("backup", "create", "c1")
    _insert(p, 1001, 2000)
    time.sleep(0.2)
    lost.marks["time"] = str(p.sql_one("SELECT clock_timestamp()"))
    time.sleep(0.2)
    _insert(p, 2001, 3000)
    lost.marks["lsn"] = str(p.sql_one("SELECT pg_current_wal_lsn()"))
    _insert(p, 3001, 4000)
    h.run("backup", "create", "c1")
    _insert(p, 4001, 5000)
    p.execute("SELECT pg_create_restore_point('rp_5000')")
    _insert(p, 5001, 6000)
    p.wait_for_archived(p.switch_wal(), timeout=120)


@pytest.fixture(scope="module")
def lost() -> Iterator[Lost]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-rebuild-", dir="/tmp"))
    h = Harbor(base)
    h.run("init")
    roots = [h.target("t1"), h.target("t2")]
    primary = PgCluster(base / "primary", name="primary").initdb()
    primary.start()
    s = Lost(base, h, primary, roots)
    try:
        h.register(primary, "c1", "t1", "t2")
        h.archive_to(primary)
        _history(h, s)
        s.before = {"wal": h.json("wal", "list", "c1"), "backups": h.json("backup", "list", "c1")}
        for f in base.glob("catalog.db*"):
            f.unlink()  # the catalog is lost
        args = [a for r in roots for a in ("--target", f"file://{r}")]
        proc = h.run("catalog", "rebuild", *args, "--json")
        s.rebuilt = json.loads(proc.stdout)
        yield s
    finally:
        for pg in [*s.clusters, primary]:
            with contextlib.suppress(Exception):
                pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def test_rebuild_counts_every_row_the_targets_describe(lost: Lost) -> None:
    r, wal = lost.rebuilt, lost.before["wal"]
    assert r["ok"] and r["skipped"] == 0 and r["problems"] == [], r
    assert (r["targets"], r["clusters"], r["placements"]) == (["t1", "t2"], ["c1"], 2)
    assert r["wal_copies"] == 2 * len(wal) and len(wal) >= 6
    assert (r["backups"], r["backup_copies"]) == (2, 4)
    assert r["restore_points"] == 1  # rp_5000, found again in the archived WAL
    assert r["needs_dsn"] == ["c1"]
    h = lost.harbor
    after = h.json("wal", "list", "c1")

    def files(listing: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (f["name"], f["checksum"], f["size"], sorted(c["target"] for c in f["copies"]))
            for f in listing
        ]

    assert files(after) == files(wal)
    keep = ("id", "status", "timeline", "start_lsn", "stop_lsn", "wal_start", "wal_stop")
    backups = h.json("backup", "list", "c1")
    assert [{k: b[k] for k in keep} for b in backups] == [
        {k: b[k] for k in keep} for b in lost.before["backups"]
    ]
    assert [p["name"] for p in h.json("restore-point", "list", "c1")] == ["rp_5000"]


def test_no_dsn_until_cluster_set_then_restores_count_exact_rows(lost: Lost) -> None:
    h = lost.harbor
    line = h.fails("backup", "create", "c1")
    assert "no DSN is recorded" in line and "cluster set" in line
    h.run("cluster", "set", "c1", "--dsn", lost.primary.dsn)
    assert h.json("cluster", "show", "c1")["dsn"] == lost.primary.dsn
    assert lost.restore("r_time", "--target-time", lost.marks["time"]) == 2000
    assert lost.restore("r_lsn", "--target-lsn", lost.marks["lsn"]) == 3000
    assert lost.restore("r_name", "--target-name", "rp_5000") == 5000
    assert lost.restore("r_end") == 6000
