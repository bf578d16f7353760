"""``GET /metrics`` of a real ``pgharbor serve`` (SQLite catalog, one node) scraped by the
real Prometheus server (Debian's package) every second, with a real PostgreSQL 15
cluster archiving to two targets; the values are read back through Prometheus's HTTP
API: a backup makes one usable backup and a recoverable window, an unwritable target
makes its copies missing (and the serve node's check run writes one event, and another
when it is fixed), a stopped primary is ``pgharbor_up 0`` while the scrape goes on. The
alert rules of contrib/prometheus are loaded by the server and checked by promtool."""

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
