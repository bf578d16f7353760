"""The scheduler end to end: two real ``pgharbor serve`` nodes (processes) against a real
PostgreSQL catalog, with a real PostgreSQL 15 cluster to back up.

- a requested backup is run once, by one node, and gives exactly one ok backup;
- ``kill -9`` of the node running a backup (paused mid-stream at a fault point): its job
  process dies with it, the other node re-runs the job once the lease ran out, and
  nothing is left running (jobs or backups);
- per-minute schedules ticked by both nodes give exactly one job per fire (a scheduled
  backup is followed by expire);
- ``/health`` is 200, then 503 once the catalog is gone; SIGTERM stops a node with 0;
- on SQLite a second node is refused; SIGTERM hands a running job back; SIGHUP reloads;
  ``log_file`` gets the log.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql as pgsql

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, allocate_port, server_dir
from tests.fixtures.serve import ServeNode, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def nodes() -> Iterator[list[ServeNode]]:
    started: list[ServeNode] = []
    yield started
    for n in started:
        if n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait()


def _jobs(h: Harbor, *args: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = h.json("job", "list", *args)
    return result


def _backups(h: Harbor) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = h.json("backup", "list", "c1")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_two_nodes(
    workdir: Path,
    pg_cluster: PgCluster,
    catalog_pg: PgCluster,
    catalog_pg_url: str,
    nodes: list[ServeNode],
) -> None:
    h = Harbor(workdir, catalog=catalog_pg_url)
    h.run("init")
    h.target("t1")
    h.register(pg_cluster, "c1", "t1")
    h.archive_to(pg_cluster)
    pg_cluster.pgbench_init(scale=2)
    h.run("schedule", "set", "--default", "drill", "* * * * *")
    line = h.fails("schedule", "set", "--default", "backup", "0 0 */2 * * *", code=2)
    assert "only standard 5-field cron" in line
    faults = server_dir(workdir / "faults")
    logs = workdir / "logs"
    logs.mkdir()

    # node a pauses every backup mid-stream (as a long backup would be)
    a = ServeNode(
        h,
        "a",
        logs / "a.log",
        PGHARBOR_FAULT="backup.mid_stream=pause",
        PGHARBOR_FAULT_DIR=str(faults),
    )
    nodes.append(a)
    a.wait_healthy()
    status, body = a.health()
    assert (status, body["node"], body["catalog"]) == (200, "a", "ok")
    job = h.json("schedule", "trigger", "c1", "backup")
    marker = faults / "backup.mid_stream.paused"
    wait_for("a's backup to pause", marker.exists, 60)
    worker_pid = int(marker.read_text())
    running = [j for j in _jobs(h, "--state", "running") if j["kind"] == "backup"]
    assert [(j["id"], j["node"], j["kind"]) for j in running] == [(job["id"], "a", "backup")]

    b = ServeNode(h, "b", logs / "b.log")
    nodes.append(b)
    b.wait_healthy()
    a.stop(signal.SIGKILL)
    wait_for("a's job process to die with it", lambda: not _pid_alive(worker_pid), 10)

    def finished() -> dict[str, Any] | None:
        j: dict[str, Any] = h.json("job", "show", str(job["id"]))
        return j if j["state"] in ("done", "failed") else None

    done = wait_for("b to finish the backup", finished, 90)
    assert (done["state"], done["node"], done["reason"], done["attempts"]) == (
        "done",
        "b",
        "retry",
        2,
    ), done
    assert not [j for j in _jobs(h, "--state", "running") if j["kind"] == "backup"]
    backups = _backups(h)
    assert sorted(x["status"] for x in backups) == ["failed", "ok"], backups
    ok = next(x for x in backups if x["status"] == "ok")
    killed = next(x for x in backups if x["status"] == "failed")
    assert done["result"]["backup"]["id"] == ok["id"]

    # the per-minute drill schedule, ticked by both nodes, fired (a drill before the first
    # backup fails at once; later ones restore: test_drills.py); off now, so that no
    # drill's restore lease makes the scheduled expire below wait its turn (Busy)
    drills = wait_for(
        "a drill fire",
        lambda: [
            j
            for j in _jobs(h, "--cluster", "c1")
            if j["kind"] == "drill" and j["state"] in ("done", "failed")
        ],
        75,
    )
    h.run("schedule", "set", "--default", "drill", "off")

    def drill_busy() -> bool:
        live = _jobs(h, "--state", "running") + _jobs(h, "--state", "queued")
        return any(j["kind"] == "drill" for j in live)

    wait_for("no drill queued or running", lambda: not drill_busy(), 120)

    # a is back (same name: its old row belongs to a dead process); a per-minute backup
    # schedule ticked by both nodes: the fire is one job, one backup, then expire
    a = ServeNode(h, "a", logs / "a2.log")
    nodes.append(a)
    a.wait_healthy()
    h.run("retention", "set", "--default", "--keep-last", "5")
    h.run("schedule", "set", "--default", "backup", "* * * * *")

    def scheduled_backup() -> dict[str, Any] | None:
        found = [j for j in _jobs(h) if j["kind"] == "backup" and j["reason"] == "scheduled"]
        return next((j for j in found if j["state"] in ("done", "failed")), None)

    sched = wait_for("a scheduled backup", scheduled_backup, 90)
    h.run("schedule", "set", "--default", "backup", "off")
    assert sched["state"] == "done", sched
    assert sched["result"]["expire"]["ok"] is True, sched["result"]["expire"]
    # keep-last 5 keeps both usable backups; the killed one's failed row is expired
    assert sched["result"]["expire"]["runs"][0]["deleted"] == [killed["id"]]
    backups = _backups(h)
    assert sorted(x["id"] for x in backups) == sorted([ok["id"], sched["result"]["backup"]["id"]])
    assert {x["status"] for x in backups} == {"ok"}

    for kind in ("drill", "backup"):
        fires = [j["fire_time"] for j in _jobs(h) if j["kind"] == kind and j["fire_time"]]
        assert fires and len(fires) == len(set(fires)), (kind, fires)
    assert {d["reason"] for d in drills} == {"scheduled"}

    # SIGTERM: a clean stop with exit 0
    assert b.stop() == 0
    assert "node b stopped" in (logs / "b.log").read_text()
    assert a.health()[0] == 200
    # the catalog goes away: a's /health says 503 (and a keeps running)
    dbname = catalog_pg_url.split("/")[3].split("?")[0]
    catalog_pg.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(dbname)))
    status, body = wait_for("503", lambda: (s := a.health())[0] == 503 and s, 30)
    assert body["catalog"] != "ok"
    assert a.proc.poll() is None
    assert a.stop() == 0
    assert "Traceback" not in (logs / "a2.log").read_text() + (logs / "b.log").read_text()


def test_sqlite_one_node_and_sigterm_hands_back(
    harbor: Harbor, pg_cluster: PgCluster, nodes: list[ServeNode]
) -> None:
    h = harbor
    h.target("t1")
    h.register(pg_cluster, "c1", "t1")
    h.archive_to(pg_cluster)
    faults = server_dir(h.workdir / "faults")
    logs = server_dir(h.workdir / "logs")  # the server user writes log_file here
    a = ServeNode(
        h,
        "a",
        logs / "a.log",
        PGHARBOR_FAULT="backup.mid_stream=pause",
        PGHARBOR_FAULT_DIR=str(faults),
        PGHARBOR_SCHEDULER_STOP_TIMEOUT="1",
    )
    nodes.append(a)
    a.wait_healthy()
    line = h.fails("serve", "--node", "b", "--listen", f"127.0.0.1:{allocate_port()}", code=7)
    assert "SQLite allows one node" in line
    job = h.json("schedule", "trigger", "c1", "backup")
    marker = faults / "backup.mid_stream.paused"
    wait_for("the backup to pause", marker.exists, 60)
    worker_pid = int(marker.read_text())
    t0 = time.monotonic()
    assert a.stop() == 0  # SIGTERM: waits 1 s for the job, then hands it back
    assert time.monotonic() - t0 < 20
    assert not _pid_alive(worker_pid)
    back = h.json("job", "show", str(job["id"]))
    assert (back["state"], back["reason"], back["node"]) == ("queued", "retry", None)
    assert "1 handed back" in (logs / "a.log").read_text()
    # the one node may start again at once; this one logs to a file
    c = ServeNode(h, "c", logs / "c.log", PGHARBOR_LOG_FILE=str(logs / "c-file.log"))
    nodes.append(c)
    done = wait_for(
        "c to run it",
        lambda: (j := h.json("job", "show", str(job["id"])))["state"] == "done" and j,
        90,
    )
    assert (done["node"], done["attempts"]) == ("c", 2)
    assert sorted(b["status"] for b in _backups(h)) == ["failed", "ok"]
    c.proc.send_signal(signal.SIGHUP)
    file_log = logs / "c-file.log"
    wait_for("the reload", lambda: "settings reloaded" in file_log.read_text(), 15)
    assert c.health()[0] == 200
    assert c.stop() == 0
    text = file_log.read_text()
    assert f"job {job['id']}: backup c1 done" in text and "node c stopped" in text
