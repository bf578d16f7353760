"""Point-in-time recovery end to end, modelled on PostgreSQL's recovery tests
(src/test/recovery/t/003_recovery_targets.pl): after a backup, rows are added in steps,
recording an xid, a time, a named restore point and an LSN; a restore to each target,
started as a real server, must count exactly the rows that existed at that point."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, server_dir

pytestmark = pytest.mark.integration


@dataclass
class Scenario:
    base: Path
    harbor: Harbor
    primary: PgCluster
    backup_id: str
    marks: dict[str, str] = field(default_factory=dict)
    clusters: list[PgCluster] = field(default_factory=list)
    n: int = 0

    def restore(
        self, name: str, *args: str, archive: bool = False, **settings: object
    ) -> PgCluster:
        pgdata = self.base / name / "data"
        server_dir(pgdata.parent)
        self.harbor.run("restore", "c1", "--pgdata", str(pgdata), *args)
        conf: dict[str, object] = {"archive_mode": archive}
        if archive:
            conf["archive_command"] = f"{self.harbor.command()} wal push c1 %p"
        conf.update(settings)
        pg = PgCluster.from_datadir(pgdata, self.base / name)
        pg.configure(conf)  # type: ignore[arg-type]
        self.clusters.append(pg)
        return pg

    def rows(self, pg: PgCluster) -> int:
        return int(pg.sql_one("SELECT count(*) FROM tab_int"))


def _insert(pg: PgCluster, lo: int, hi: int) -> None:
    pg.execute("INSERT INTO tab_int SELECT generate_series(%s::int, %s::int)", (lo, hi))


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-pitr-", dir="/tmp"))
    harbor = Harbor(base)
    harbor.run("init")
    harbor.target("t1")
    harbor.target("t2")
    primary = PgCluster(base / "primary", name="primary").initdb()
    primary.start()
    s = Scenario(base, harbor, primary, "")
    try:
        harbor.register(primary, "c1", "t1", "t2")
        harbor.archive_to(primary)
        primary.execute("CREATE TABLE tab_int (a int)")
        _insert(primary, 1, 1000)
        harbor.run("backup", "create", "c1")
        s.backup_id = harbor.json("backup", "list", "c1")[-1]["id"]
        _insert(primary, 1001, 2000)
        s.marks["xid"] = str(primary.sql_one("SELECT pg_current_xact_id()"))
        _insert(primary, 2001, 3000)
        time.sleep(0.2)
        s.marks["time"] = str(primary.sql_one("SELECT clock_timestamp()"))
        time.sleep(0.2)
        _insert(primary, 3001, 4000)
        primary.execute("SELECT pg_create_restore_point('rp_4000')")
        _insert(primary, 4001, 5000)
        s.marks["lsn"] = str(primary.sql_one("SELECT pg_current_wal_lsn()"))
        _insert(primary, 5001, 6000)
        primary.wait_for_archived(primary.switch_wal(), timeout=120)
        yield s
    finally:
        for pg in [*s.clusters, primary]:
            with contextlib.suppress(Exception):
                pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        ("immediate", ["--target-immediate"], 1000),
        ("xid", ["--target-xid", "{xid}"], 2000),
        ("time", ["--target-time", "{time}"], 3000),
        ("name", ["--target-name", "rp_4000"], 4000),
        ("lsn", ["--target-lsn", "{lsn}"], 5000),
        ("end", [], 6000),
    ],
)
def test_restore_to_target_counts_exact_rows(
    scenario: Scenario, case: str, args: list[str], expected: int
) -> None:
    pg = scenario.restore(f"r_{case}", *[a.format(**scenario.marks) for a in args])
    pg.start()
    pg.wait_for_recovery_end(timeout=120)
    assert scenario.rows(pg) == expected
    pg.stop()


def test_new_timeline_then_restore_latest_follows_it(scenario: Scenario) -> None:
    branch = scenario.restore("r_branch", "--target-xid", scenario.marks["xid"], archive=True)
    branch.start()
    branch.wait_for_recovery_end(timeout=120)
    assert scenario.rows(branch) == 2000
    tli = int(branch.sql_one("SELECT timeline_id FROM pg_control_checkpoint()"))
    assert tli >= 2
    _insert(branch, 900001, 900100)
    branch.wait_for_archived(branch.switch_wal(), timeout=120)
    branch.stop()
    history = {f["name"] for f in scenario.harbor.json("wal", "list", "c1")}
    assert f"{tli:08X}.history" in history
    latest = scenario.restore("r_latest")
    latest.start()
    latest.wait_for_recovery_end(timeout=120)
    assert scenario.rows(latest) == 2100
    assert int(latest.sql_one("SELECT count(*) FROM tab_int WHERE a > 900000")) == 100
    latest.stop()


def test_standby_streams_from_primary(scenario: Scenario) -> None:
    primary = scenario.primary
    standby = scenario.restore(
        "r_standby",
        "--standby",
        "--primary-conninfo",
        f"{primary.tcp_dsn} application_name=pgharbor_standby",
    )
    assert (standby.pgdata / "standby.signal").exists()
    standby.start()
    primary.wait_until(
        "the standby to stream",
        lambda: (
            primary.sql_one(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgharbor_standby' AND state = 'streaming'"
            )
            == 1
        ),
        60,
        lambda: standby.log_tail(),
    )
    _insert(primary, 6001, 6500)
    standby.wait_for_replay(primary.current_lsn(), timeout=60)
    assert standby.is_in_recovery()
    assert scenario.rows(standby) == scenario.rows(primary)
    standby.stop()


def test_restore_refuses_non_empty_and_delta_repairs(scenario: Scenario) -> None:
    target = scenario.base / "r_delta" / "data"
    server_dir(target)
    (target / "junk").write_text("x")
    line = scenario.harbor.fails("restore", "c1", "--pgdata", str(target))
    assert "not empty" in line
    scenario.harbor.run("restore", "c1", "--pgdata", str(target), "--target-immediate", "--delta")
    assert not (target / "junk").exists()
    out = scenario.harbor.run(
        "restore", "c1", "--pgdata", str(target), "--target-immediate", "--delta"
    ).stdout
    # only postgresql.auto.conf (the recovery settings) is rewritten: every data file is unchanged
    m = re.search(r"(\d+) B written, (\d+) files unchanged", out)
    assert m and int(m.group(1)) < 4096 and int(m.group(2)) > 900, out
    pg = PgCluster.from_datadir(target, scenario.base / "r_delta")
    pg.configure(archive_mode=False)
    scenario.clusters.append(pg)
    pg.start()
    pg.wait_for_recovery_end(timeout=120)
    assert scenario.rows(pg) == 1000
    pg.stop()
