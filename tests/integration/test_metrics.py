"""``GET /metrics`` of a real ``pgharbor serve`` (SQLite catalog, one node) scraped by the
real Prometheus server (Debian's package) every second, with a real PostgreSQL 15
cluster archiving to two targets; the values are read back through Prometheus's HTTP
API: a streaming standby shows its lag and its slot active, then stopped, the slot
inactive retaining the WAL written since; a backup makes one usable backup and a recoverable window, an unwritable target
makes its copies missing (and the serve node's check run writes one event, and another
when it is fixed), a stopped primary is ``pgharbor_up 0`` while the scrape goes on. The
alert rules of contrib/prometheus are loaded by the server, checked by ``promtool check
rules`` and their tests (alerts_test.yml) run by ``promtool test rules``. The scheduler
check goes OK -> WARNING -> CRITICAL -> OK with a real serve node and failing backups."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgFactory
from tests.fixtures.prometheus import PROMTOOL, Prometheus
from tests.fixtures.serve import ServeNode, wait_for

pytestmark = pytest.mark.integration
ALERTS = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "alerts.yml"


def test_the_alert_rules_are_valid(workdir: Path) -> None:
    proc = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    broken = workdir / "broken.yml"
    broken.write_text(ALERTS.read_text().replace("pgharbor_up == 0", "pgharbor_up == ", 1))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True)
    assert proc.returncode != 0  # promtool really parses the expressions
    # the rules' own tests: an idle server does not alert, a copy in flight does not
    tests = ALERTS.with_name("alerts_test.yml")
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", tests.name], cwd=ALERTS.parent, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def _writable(root: Path, on: bool) -> None:
    for d, _, _ in os.walk(root):
        os.chmod(d, 0o755 if on else 0o555)


@pytest.fixture
def started() -> Iterator[list[Any]]:
    procs: list[Any] = []
    yield procs
    for p in procs:
        if isinstance(p, Prometheus):
            p.stop()
        elif p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def _one(found: dict[tuple[tuple[str, str], ...], float]) -> float:
    assert len(found) == 1, found
    return next(iter(found.values()))


def test_prometheus_scrapes_serve(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path, started: list[Any]
) -> None:
    t2 = harbor.target("t2")
    harbor.target("t1")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1", "t2")
    harbor.archive_to(pg)
    pg.execute("SELECT pg_create_physical_replication_slot('gone', true)")
    pg.execute("SELECT pg_create_physical_replication_slot('s1')")
    standby = pg_factory.standby(pg, "standby", primary_slot_name="s1")
    standby.wait_for_replay(pg.current_lsn())
    pg.wait_for_archived(pg.switch_wal())
    node = ServeNode(
        harbor,
        "n1",
        workdir / "serve.log",
        PGHARBOR_METRICS_CACHE="0.5",
        PGHARBOR_EVENTS_INTERVAL="1",
    )
    started.append(node)
    node.wait_healthy()

    # the exposition itself: valid text format, bounded labels, no WAL names
    text = node.metrics()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["pgharbor_up"].samples[0].labels == {"cluster": "c1"}
    assert fams["pgharbor_up"].samples[0].value == 1
    assert "000000010000" not in text
    wal_files = fams["pgharbor_wal_files"].samples[0].value
    assert wal_files == len(harbor.wal_files("c1")) >= 1

    prom = Prometheus(workdir / "prom", [f"127.0.0.1:{node.port}"], ALERTS)
    started.append(prom)
    assert _one(prom.wait('up{job="pgharbor"} == 1')) == 1
    assert _one(prom.wait('pgharbor_up{cluster="c1"}')) == 1
    assert _one(prom.wait('pgharbor_backups_usable{cluster="c1"}')) == 0
    no_backup = prom.wait('ALERTS{alertname="PgharborNoUsableBackup",alertstate="firing"}')
    assert dict(next(iter(no_backup))).get("cluster") == "c1"
    last = _one(prom.wait('pgharbor_archive_last_archived_timestamp_seconds{cluster="c1"}'))
    assert abs(last - time.time()) < 300
    slot = prom.wait('pgharbor_slot_active{cluster="c1",slot="gone"}')
    assert _one(slot) == 0
    reserved = prom.wait('pgharbor_slot_wal_status{slot="gone",wal_status="reserved"}')
    assert _one(reserved) == 1
    assert _one(prom.wait('pgharbor_slot_active{slot="s1"} == 1')) == 1
    assert _one(prom.wait('pgharbor_replication_standbys{cluster="c1"}')) == 1
    lag = prom.wait('pgharbor_replication_lag_bytes{cluster="c1"}')
    assert [dict(k)["standby"] for k in lag] == ["walreceiver"] and _one(lag) >= 0
    assert prom.wait('pgharbor_replication_lag_seconds{standby="walreceiver"}')

    # the standby stops: its slot is inactive and retains the WAL written since
    standby.stop()
    pg.execute(
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g"
    )
    pg.wait_for_archived(pg.switch_wal())
    assert _one(prom.wait('pgharbor_replication_standbys{cluster="c1"} == 0')) == 0
    retained = _one(prom.wait('pgharbor_slot_retained_bytes{slot="s1"} > 8 * 1024 * 1024'))
    exact = pg.sql_one(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots"
        " WHERE slot_name = 's1'"
    )
    assert retained <= float(exact)  # the primary's own figure, a moment later
    assert _one(prom.query('pgharbor_slot_active{slot="s1"}')) == 0

    # a backup: one usable, its end time, a recoverable window on timeline 1
    harbor.run("backup", "create", "c1")
    ended = harbor.json("backup", "list", "c1")[0]
    assert _one(prom.wait('pgharbor_backups_usable{cluster="c1"} == 1')) == 1
    stop = _one(prom.wait('pgharbor_backup_last_success_timestamp_seconds{cluster="c1"}'))
    assert stop > time.time() - 300, ended
    start = prom.wait('pgharbor_recoverable_window_start_timestamp_seconds{cluster="c1"}')
    assert dict(next(iter(start)))["timeline"] == "1" and _one(start) <= stop
    stored = prom.wait('pgharbor_target_stored_bytes{cluster="c1",kind="backup"}')
    assert sum(stored.values()) > 1_000_000  # the backup's chunks on its target
    assert _one(prom.wait('pgharbor_wal_missing_copies{target="t2"}')) == 0

    # t2 cannot be written: its copies go missing, the copies check goes WARNING once
    _writable(t2, False)
    for _ in range(2):
        pg.wait_for_archived(pg.switch_wal())
    missing = _one(prom.wait('pgharbor_wal_missing_copies{cluster="c1",target="t2"} >= 2'))
    assert missing == sum(1 for f in harbor.wal_files("c1").values() if "t2" in f["missing"])
    assert _one(prom.wait('pgharbor_target_up{target="t2"} == 0', 90)) == 0
    assert _one(prom.wait('pgharbor_check_state{cluster="c1",service="copies"} == 1')) == 1

    def events(kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = harbor.json("events", "c1")
        return [e for e in found if e["kind"] == kind]

    warned = wait_for("a copies event", lambda: events("copies"), 30)
    assert [(e["previous"], e["state"]) for e in warned] == [("OK", "WARNING")]
    time.sleep(2.5)  # more evaluations in the same state: no more events
    assert len(events("copies")) == 1

    _writable(t2, True)
    harbor.run("wal", "sync", "c1")
    assert _one(prom.wait('pgharbor_wal_missing_copies{target="t2"} == 0')) == 0
    back = wait_for("copies back to OK", lambda: len(events("copies")) == 2 and events("copies"))
    assert (back[1]["previous"], back[1]["state"]) == ("WARNING", "OK")

    # the primary stops: up 0, the catalog's series are still there, the scrape goes on
    pg.stop()
    assert _one(prom.wait('pgharbor_up{cluster="c1"} == 0')) == 0
    assert _one(prom.query('up{job="pgharbor"}')) == 1
    assert _one(prom.query('pgharbor_backups_usable{cluster="c1"}')) == 1


def _check(harbor: Harbor, *args: str) -> tuple[int, str]:
    proc = harbor.run("check", "scheduler", *args, check=False)
    return proc.returncode, proc.stdout.splitlines()[0]


def test_the_scheduler_check(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path, started: list[Any]
) -> None:
    harbor.target("t1")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1")
    harbor.archive_to(pg)
    code, line = _check(harbor, "c1")
    assert code == 2 and "no serve node is running" in line, line
    assert "backup_schedule=0;;1:;0;1" in line and "nodes=0;;;0" in line

    harbor.run("schedule", "set", "--default", "backup", "0 3 * * *")
    node = ServeNode(harbor, "n1", workdir / "serve.log")
    started.append(node)
    node.wait_healthy()
    code, line = _check(harbor, "c1")
    assert code == 0, line
    assert line.startswith("PGHARBOR_SCHEDULER OK - 1 node(s), freshest heartbeat")
    assert "failures=0;1;2;0" in line and "backup_schedule=1;;1:;0;1" in line

    # the primary is gone: every requested backup fails; the third in a row is critical
    pg.stop()

    def run_backup() -> dict[str, Any]:
        job = harbor.json("schedule", "trigger", "c1", "backup")

        def finished() -> dict[str, Any] | None:
            j: dict[str, Any] = harbor.json("job", "show", str(job["id"]))
            return j if j["state"] in ("done", "failed") else None

        found: dict[str, Any] = wait_for("the backup job", finished, 120)
        return found

    states = []
    for _ in range(3):
        assert run_backup()["state"] == "failed"
        states.append(_check(harbor, "c1")[0])
    assert states == [0, 1, 2], states
    line = _check(harbor, "c1")[1]
    assert "backup failed 3 time(s) in a row" in line and "failures=3;1;2;0" in line
    failed = [e for e in harbor.json("events", "c1") if e["source"] == "job"]
    assert [(e["kind"], e["state"]) for e in failed] == [("backup", "failed")] * 3
    checks = [e for e in harbor.json("events", "c1") if e["kind"] == "scheduler"]
    assert [(e["previous"], e["state"]) for e in checks] == [
        (None, "CRITICAL"),
        ("CRITICAL", "OK"),
        ("OK", "WARNING"),
        ("WARNING", "CRITICAL"),
    ]

    # the primary is back, a backup succeeds: OK; the node stops: no node, critical
    pg.start()
    assert run_backup()["state"] == "done"
    assert _check(harbor, "c1")[0] == 0
    assert node.stop() == 0
    code, line = _check(harbor, "c1")
    assert code == 2 and "no serve node is running" in line
