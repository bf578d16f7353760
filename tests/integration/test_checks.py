"""``pgharbor check`` on real PostgreSQL 15: each check driven OK → WARNING/CRITICAL → OK
by a real cause (archiving blocked and WAL piling up, a copy missing, a backup too old, a
stopped standby, a slot whose consumer is gone, a restored copy archiving a new
timeline), asserting the exit code, the status line and the perfdata values."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.harbor import PGHARBOR, Harbor
from tests.fixtures.postgres import PgCluster, PgFactory, server_dir

pytestmark = pytest.mark.integration

SEG = 16 * 1024 * 1024
_LINE = re.compile(r"^PGHARBOR_[A-Z_]+ (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| (.+))?$")
_PERF = re.compile(r"^([A-Za-z0-9_]+)=(-?[0-9.]+|U)(s|B|%|c)?(;[^; ]*){0,4}$")


def check(harbor: Harbor, *args: str) -> tuple[int, str, dict[str, str]]:
    """Run a check: (exit code, first line, perfdata label -> ``value[UOM];warn;crit;…``)
    after checking the first line and every perfdata item against the plugin grammar."""
    proc = harbor.run("check", *args, check=False)
    first = proc.stdout.splitlines()[0]
    m = _LINE.match(first)
    assert m, proc.stdout + proc.stderr
    perf: dict[str, str] = {}
    for item in (m[3] or "").split():
        assert _PERF.match(item), item
        name, _, rest = item.partition("=")
        perf[name] = rest
    assert proc.returncode == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[m[1]]
    return proc.returncode, first, perf


def value(perf: dict[str, str], label: str) -> float:
    return float(re.sub(r"[sB%c]$", "", perf[label].split(";")[0]))


def _writable(root: Path, on: bool) -> None:
    for d, _, _ in os.walk(root):
        os.chmod(d, 0o755 if on else 0o555)


def test_archive_blocked_and_a_copy_missing(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    t1, t2 = harbor.target("t1"), harbor.target("t2")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1", "t2")
    harbor.archive_to(pg)
    pg.wait_for_archived(pg.switch_wal())
    code, line, perf = check(harbor, "archive", "c1")
    assert code == 0 and line.startswith("PGHARBOR_ARCHIVE OK - 0 WAL file(s) waiting")
    assert perf["waiting"] == "0;;;0" and perf["failing"] == "0;0;;0;1"
    assert perf["waiting_bytes"] == "0B;67108864;1073741824;0"
    assert check(harbor, "copies", "c1")[0] == 0
    data = harbor.json("check", "archive", "c1")
    assert data["state"] == "OK" and data["items"][0]["name"] == "c1"
    got = {m["label"]: m["value"] for m in data["items"][0]["metrics"]}
    assert got["waiting"] == 0 and got["failing"] == 0 and got["last_wal_age"] >= 0
    assert "waiting=0;;;0" in data["items"][0]["perfdata"]
    code, line, perf = check(harbor, "targets", "c1")
    assert code == 0 and perf["t1_up"] == "1;;1:;0;1" and 0 < value(perf, "t2_free") <= 100

    # t2 cannot be written: archiving goes on (1 copy required), t2's copy is missing
    _writable(t2, False)
    missed = pg.switch_wal()
    pg.wait_for_archived(missed)
    code, line, perf = check(harbor, "copies", "c1")
    assert code == 1, line
    assert line.startswith("PGHARBOR_COPIES WARNING - ") and f"first {missed}; on t2" in line
    assert value(perf, "missing_copies") >= 1 and perf["missing_required"] == "0;;0;0"
    assert check(harbor, "targets", "c1", "-c", "up=1:")[0] == 2  # t2 fails the write probe

    # t1 too: nothing can be archived, WAL piles up on the primary
    _writable(t1, False)
    for _ in range(3):
        pg.switch_wal()
    pg.wait_until("archive failures", lambda: pg.archiver_stats()["failed_count"] > 0, 60)
    args = ("archive", "c1", "-w", "waiting_bytes=16MB", "-c", "waiting_bytes=40MB")
    code, line, perf = check(harbor, *args)
    assert code == 2 and line.startswith("PGHARBOR_ARCHIVE CRITICAL - 3 WAL file(s) waiting")
    assert perf["waiting_bytes"] == f"{3 * SEG}B;16777216;41943040;0"
    assert perf["waiting"] == "3;;;0" and perf["failing"] == "1;0;;0;1"
    failures = value(perf, "archive_failures")  # pg_stat_archiver's counter, still rising
    assert 1 <= failures <= pg.archiver_stats()["failed_count"]
    assert perf["archive_failures"].endswith("c;;;0")
    code, line, _ = check(harbor, "all", "c1")
    assert code == 2 and "c1 archive WARNING" in line and "c1 targets CRITICAL" in line

    # writable again: the backlog drains, wal sync copies what t2 lacked
    _writable(t1, True)
    _writable(t2, True)
    pg.wait_until("the backlog to drain", lambda: check(harbor, "archive", "c1")[0] == 0, 120)
    harbor.run("wal", "sync", "c1")
    code, line, perf = check(harbor, "copies", "c1")
    assert code == 0 and perf["missing_copies"] == "0;0;;0", line
    code, line, perf = check(harbor, "copies", "--all")  # the fleet: labels per cluster
    assert (code, line.split(" | ")[0]) == (0, "PGHARBOR_COPIES OK - 1 checked, all OK")
    assert perf["c1_missing_copies"] == "0;0;;0"
    long = harbor.run("check", "copies", "--all").stdout.splitlines()[1:]
    assert len(long) == 1 and long[0].startswith("c1: OK - ")
    time.sleep(2)  # idle: nothing waits, so even a 1 s age limit is OK
    code, line, perf = check(harbor, "archive", "c1", "-c", "waiting_age=1s")
    assert code == 0 and perf["waiting_age"] == "0s;900;1;0" and value(perf, "last_wal_age") >= 2


def test_a_backup_too_old_and_a_stray_copy_on_a_new_timeline(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    harbor.target("t1")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1")
    code, line, perf = check(harbor, "backup", "c1")
    assert code == 2 and line.startswith("PGHARBOR_BACKUP CRITICAL - no usable backup |")
    assert perf["backups"] == "0;;1:;0" and perf["backup_age"] == "U;93600;180000;0"
    harbor.archive_to(pg)
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    harbor.run("backup", "create", "c1")
    pg.wait_for_archived(pg.switch_wal())
    code, line, perf = check(harbor, "backup", "c1")
    assert code == 0 and "1 usable backup(s)" in line, line
    assert perf["backups"] == "1;;1:;0" and value(perf, "backup_age") < 60
    assert perf["backup_age"].endswith(";93600;180000;0") and value(perf, "window") >= 0
    time.sleep(3)
    code, line, perf = check(harbor, "backup", "c1", "-w", "1s", "-c", "2s")
    assert code == 2 and line.startswith("PGHARBOR_BACKUP CRITICAL - 1 usable backup(s)")
    assert value(perf, "backup_age") >= 3 and perf["backup_age"].endswith(";1;2;0")
    harbor.run("backup", "create", "c1")
    code, _, perf = check(harbor, "backup", "c1", "-w", "60s", "-c", "120s")
    assert code == 0 and perf["backups"].startswith("2;")

    code, line, perf = check(harbor, "timeline", "c1")
    assert code == 0 and line.startswith("PGHARBOR_TIMELINE OK - the primary is on timeline 1 |")
    assert perf["foreign_segments"] == "0;;0;0" and perf["cluster_tli"] == "1;;;0"
    # a restored copy, promoted, archives as c1 on timeline 2
    copy_dir = server_dir(workdir / "copy", 0o700)
    harbor.run("restore", "c1", "--pgdata", str(copy_dir), "--archive-mode", "preserve")
    copy = PgCluster.from_datadir(copy_dir, workdir / "copy-run")
    pg_factory.clusters.append(copy)
    copy.start(wait=False)
    copy.wait_for_recovery_end(120)
    copy.wait_for_archived(copy.switch_wal())
    code, line, perf = check(harbor, "timeline", "c1")
    assert code == 2, line
    assert line.startswith("PGHARBOR_TIMELINE CRITICAL - timeline 2 is still growing")
    assert value(perf, "foreign_segments") >= 1 and perf["archive_max_tli"] == "2;;;0"
    copy.stop()
    time.sleep(3)  # it stopped: nothing on timeline 2 in the last 2 s
    code, line, perf = check(harbor, "timeline", "c1", "--window", "2s")
    assert code == 0 and "holds timeline(s) [2] (not growing)" in line
    assert perf["foreign_segments"] == "0;;0;0"


def _write_wal(pg: PgCluster, mb: int) -> None:
    pg.execute(
        f"CREATE TABLE IF NOT EXISTS fill (x text); INSERT INTO fill SELECT repeat('x', 1000) FROM generate_series(1, {mb * 900})"
    )


def test_a_standby_falling_behind_and_a_slot_retaining_wal(
    harbor: Harbor, pg_factory: PgFactory
) -> None:
    harbor.target("t1")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1")
    pg.execute("SELECT pg_create_physical_replication_slot('s1')")
    standby = pg_factory.standby(pg, "standby", primary_slot_name="s1")
    standby.wait_for_replay(pg.current_lsn())
    lag = ("replication-lag", "c1", "-w", "lag=1MB", "-c", "lag=8MB,standbys=1:")
    slots = ("replication-slots", "c1", "-w", "retained=4MB", "-c", "retained=8MB")
    code, line, perf = check(harbor, *lag)
    assert code == 0 and line.startswith(
        "PGHARBOR_REPLICATION_LAG OK - 1 standby(s): walreceiver streaming"
    )
    assert perf["walreceiver_lag"].endswith(";1048576;8388608;0") and perf["standbys"] == "1;;1:;0"
    code, line, perf = check(harbor, *slots)
    assert code == 0 and "s1 active" in line and perf["s1_inactive"] == "0s;900;;0"

    # replay paused: what the standby received piles up unreplayed
    standby.execute("SELECT pg_wal_replay_pause()")
    _write_wal(pg, 12)
    target = pg.current_lsn()
    standby.wait_until(
        "receipt",
        lambda: standby.sql_one("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", [target]),
        60,
    )
    code, line, perf = check(harbor, *lag)
    assert code == 2 and line.startswith("PGHARBOR_REPLICATION_LAG CRITICAL"), line
    assert value(perf, "walreceiver_lag") > 8 * 1024 * 1024
    assert value(perf, "walreceiver_flush_lag") < 1024 * 1024  # received, not replayed
    assert check(harbor, *slots)[0] == 0  # the slot follows what the standby flushed
    standby.execute("SELECT pg_wal_replay_resume()")
    standby.wait_for_replay(target)
    assert check(harbor, *lag)[0] == 0

    # the standby is gone: its slot keeps the WAL on the primary
    standby.stop()
    _write_wal(pg, 12)
    code, line, perf = check(harbor, *slots)
    assert code == 2 and "s1 inactive reserved retains" in line, line
    assert value(perf, "s1_retained") > 12 * 1000 * 900  # at least the rows written
    assert perf["s1_retained"].endswith("B;4194304;8388608;0")
    code, line, perf = check(harbor, *lag)
    assert code == 2 and perf["standbys"] == "0;;1:;0"
    assert line.startswith("PGHARBOR_REPLICATION_LAG CRITICAL - 0 standby(s) |")
    time.sleep(1.2)
    code, _, perf = check(harbor, *slots[:2], "-w", "inactive=1s", "-c", "retained=1GB")
    assert code == 1 and value(perf, "s1_inactive") >= 1  # since the first check saw it idle

    standby.start()
    standby.wait_for_replay(pg.current_lsn())
    pg.wait_until("the slot to move", lambda: check(harbor, *slots)[0] == 0, 60)
    assert check(harbor, *lag)[0] == 0


def test_a_role_with_pg_monitor_suffices(harbor: Harbor, pg_factory: PgFactory) -> None:
    harbor.target("t1")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1")
    pg.execute("CREATE ROLE mon LOGIN IN ROLE pg_monitor")
    # only for `cluster set` to recognise the cluster by its fingerprint; the checks need none
    pg.execute("GRANT USAGE ON SCHEMA pgharbor TO mon")
    pg.execute("GRANT SELECT ON ALL TABLES IN SCHEMA pgharbor TO mon")
    harbor.run("cluster", "set", "c1", "--dsn", pg.dsn.replace("user=postgres", "user=mon"))
    assert "user=mon" in harbor.json("cluster", "show", "c1")["dsn"]
    for service in ("archive", "replication-lag", "replication-slots", "timeline"):
        code, line, _ = check(harbor, service, "c1")
        assert code != 3, line
    pg.stop()  # the primary is down: what needs it is UNKNOWN, what the catalog knows is not
    code, line, _ = check(harbor, "archive", "c1")
    assert code == 3 and line.startswith("PGHARBOR_ARCHIVE UNKNOWN - cannot connect to the cluster")
    proc = harbor.run("check", "all", "c1", check=False)
    assert "c1 timeline: UNKNOWN - cannot connect" in proc.stdout
    assert "c1 copies: OK - 0 files" in proc.stdout, proc.stdout


def test_usage_errors_and_unknown_clusters_are_unknown(harbor: Harbor) -> None:
    for args in (
        ["archive", "nope"],
        ["archive", "--bogus"],
        ["nosuch", "--all"],
        ["backup", "--all", "-w", "1x"],
        ["backup"],
    ):
        proc = harbor.run("check", *args, check=False)
        assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
        assert re.match(r"^PGHARBOR_[A-Z_]+ UNKNOWN - ", proc.stdout), proc.stdout
    proc = harbor.run("check", "archive", "nope", "--json", check=False)
    assert proc.returncode == 3 and json.loads(proc.stdout)["state"] == "UNKNOWN"
    code, line, perf = check(harbor, "all", "--all")
    assert (code, line, perf) == (0, "PGHARBOR_ALL OK - no clusters in the catalog", {})
    plugin = str(Path(PGHARBOR).with_name("check_pgharbor"))
    proc = subprocess.run(
        [plugin, "--catalog", harbor.catalog, "archive", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 3 and proc.stdout.startswith(
        "PGHARBOR_ARCHIVE UNKNOWN - no cluster named 'nope'"
    )
    assert subprocess.run([plugin, "--help"], capture_output=True).returncode == 3
