"""Async archiving on a real PostgreSQL 15: the resident pusher killed with SIGKILL under
load loses nothing and leaves no partial object; a target that is down makes
PostgreSQL keep and retry its WAL, and archiving resumes by itself."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, server_dir
from tests.fixtures.storage_kits import leave_tmp_file

pytestmark = pytest.mark.integration


def _pusher_pid(pg: PgCluster) -> int | None:
    lock = pg.pgdata / "pg_wal" / "pgharbor-spool" / "pusher.lock"
    try:
        text = lock.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.startswith(".pgharbor-tmp.")]


def _stored(root: Path) -> dict[str, Path]:
    return {p.name: p for p in (root / "c1" / "wal").rglob("*") if p.is_file()}


def test_kill_9_of_the_pusher_under_load_loses_nothing(
    harbor: Harbor, pg_cluster: PgCluster, workdir: Path
) -> None:
    t1 = harbor.target("t1")
    harbor.register(pg_cluster, "c1", "t1")
    ref = workdir / "postgres-bytes"
    harbor.archive_to(pg_cluster, keep_copy=ref, mode="async")
    pg_cluster.pgbench_init(scale=2)
    load = threading.Thread(target=pg_cluster.pgbench, kwargs={"seconds": 12, "clients": 2})
    load.start()
    killed = 0
    for _ in range(3):  # kill whichever pusher is running, three times during the load
        pg_cluster.wait_until(
            "a running pusher",
            lambda: (p := _pusher_pid(pg_cluster)) is not None and _alive(p),
            60,
            str,
        )
        pid = _pusher_pid(pg_cluster)
        assert pid is not None
        pg_cluster.switch_wal()
        os.kill(pid, signal.SIGKILL)
        killed += 1
        pg_cluster.wait_until("the pusher to die", lambda pid=pid: not _alive(pid), 30, str)
    load.join()
    last = pg_cluster.switch_wal()
    pg_cluster.wait_for_archived(last, timeout=180)  # a new pusher was started on demand
    assert killed == 3
    stored = _stored(t1)
    archived = {p.name for p in ref.iterdir()}
    assert archived <= set(stored)  # nothing PostgreSQL handed over is missing
    # no partial object: what a killed pusher was writing, its successor sweeps away
    # (at its start, on a worker: wait for that, not for a fixed time)
    pg_cluster.wait_until("the sweep", lambda: not _leftovers(t1), 30, lambda: str(_leftovers(t1)))
    out = server_dir(workdir / "out")
    for name in sorted(archived):
        harbor.run("wal", "fetch", "c1", name, str(out / name))
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    # rows went through the journal: all reach the catalog (in batches), each once
    pg_cluster.wait_until("the catalog", lambda: archived <= set(harbor.wal_files()), 30, str)
    files = harbor.wal_files()
    assert archived <= set(files) and all(len(f["copies"]) == 1 for f in files.values())


def test_target_down_then_back_resumes_by_itself(harbor: Harbor, pg_cluster: PgCluster) -> None:
    t1 = harbor.target("t1")
    harbor.register(pg_cluster, "c1", "t1")
    harbor.archive_to(pg_cluster, mode="async")
    pg_cluster.wait_for_archived(pg_cluster.switch_wal(), timeout=60)
    parked = t1.with_name("t1-away")
    t1.rename(parked)  # the target disappears (an unmounted NFS share)
    pending = [pg_cluster.switch_wal() for _ in range(3)]
    pg_cluster.wait_until(
        "archive failures", lambda: pg_cluster.archiver_stats()["failed_count"] > 0, 90, str
    )
    status = pg_cluster.pgdata / "pg_wal" / "archive_status"
    for name in pending:  # PostgreSQL keeps every file: nothing is dropped
        assert (status / f"{name}.ready").exists() or (status / f"{name}.done").exists()
        assert (pg_cluster.pgdata / "pg_wal" / name).exists()
    assert "does not exist" in pg_cluster.log_tail(200)
    parked.rename(t1)
    pg_cluster.wait_for_archived(pending[-1], timeout=180)
    assert set(pending) <= set(_stored(t1))


def test_a_new_pusher_sweeps_what_a_killed_one_left(harbor: Harbor, pg_cluster: PgCluster) -> None:
    """The leftover of a pusher killed mid-put (a temporary named by the storage code, by a
    process that is gone) next to a segment still waiting: the next pusher removes it."""
    t1 = harbor.target("t1")
    harbor.register(pg_cluster, "c1", "t1")
    harbor.archive_to(pg_cluster, mode="async")
    pg_cluster.wait_for_archived(pg_cluster.switch_wal(), timeout=60)
    pid = _pusher_pid(pg_cluster)
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGKILL)
        pg_cluster.wait_until("the pusher to die", lambda: not _alive(pid), 30, str)
    waiting = str(pg_cluster.sql_one("SELECT pg_walfile_name(pg_current_wal_lsn())"))
    leave_tmp_file(t1, f"c1/wal/{waiting[:16]}/{waiting}", alive=False, owner=t1)
    assert len(_leftovers(t1)) == 1
    pg_cluster.wait_for_archived(pg_cluster.switch_wal(), timeout=60)
    pg_cluster.wait_until("the sweep", lambda: not _leftovers(t1), 30, lambda: str(_leftovers(t1)))
    assert waiting in _stored(t1)
