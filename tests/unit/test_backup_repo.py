"""The catalog's running backups: a dead writer's row is marked failed by the next read,
a live one is left alone, and a row that is no longer running can never become ok."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pgharbor.catalog.backups import STALE_AFTER, BackupRepo
from pgharbor.catalog.repo import now
from pgharbor.catalog.schema import backups
from pgharbor.errors import Conflict
from tests.fixtures.catalogs import add_test_cluster, init_catalog


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_dead_writers_fail_and_live_ones_stay(tmp_path: Path) -> None:
    cat = init_catalog(f"sqlite:///{tmp_path}/catalog.db")
    cid = add_test_cluster(cat)
    t = cat.add_target("t1", "file:///a")
    repo = BackupRepo(cat)
    here = socket.gethostname()
    repo.begin("b-live", cid, "l", [t.id], here, os.getpid())
    repo.begin("b-killed", cid, "l", [t.id], here, _dead_pid())
    repo.begin("b-remote", cid, "l", [t.id], "elsewhere", 1)
    repo.begin("b-silent", cid, "l", [t.id], "elsewhere", 1)
    with cat.engine.begin() as conn:
        conn.execute(
            backups.update()
            .where(backups.c.id == "b-silent")
            .values(modified_at=now() - timedelta(seconds=STALE_AFTER + 5))
        )
    status = {b.id: (b.status, b.error or "") for b in repo.for_cluster("c1")}
    assert status["b-live"][0] == status["b-remote"][0] == "running"
    assert status["b-killed"][0] == "failed" and "is gone" in status["b-killed"][1]
    assert status["b-silent"][0] == "failed" and "no sign of life" in status["b-silent"][1]

    repo.heartbeat("b-live")
    repo.finish("b-live", stored_bytes=5)
    assert repo.get("c1", "b-live").status == "ok"
    with pytest.raises(Conflict, match="no longer recorded as running"):
        repo.finish("b-killed")  # a writer taken for dead never turns its backup ok
    assert repo.get("c1", "b-killed").status == "failed"
    repo.delete("b-remote")
    with pytest.raises(Conflict):
        repo.finish("b-remote")  # nor one whose row was deleted
    with cat.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(backups)).scalar() == 3
