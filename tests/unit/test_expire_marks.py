"""Which backups an expire may mark ``expiring``: finished ones of every outcome
(ok, failed, unusable) and ones a crashed expire left marked, never a running one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import sqlalchemy as sa

from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.retention import RetentionRepo
from pgharbor.catalog.schema import backups
from tests.fixtures.catalogs import add_test_cluster, init_catalog


def test_every_finished_backup_can_be_marked_but_a_running_one_cannot(tmp_path: Path) -> None:
    cat = init_catalog(f"sqlite:///{tmp_path}/catalog.db")
    cid = add_test_cluster(cat)
    t = cat.add_target("t1", "file:///a")
    repo = BackupRepo(cat)
    statuses = ["ok", "failed", "unusable", "expiring", "deleting", "running"]
    for s in statuses:
        repo.begin(f"b-{s}", cid, "l", [t.id], socket.gethostname(), os.getpid())
    with cat.engine.begin() as conn:
        for s in statuses:
            conn.execute(backups.update().where(backups.c.id == f"b-{s}").values(status=s))

    marked = RetentionRepo(cat).mark_expiring([f"b-{s}" for s in statuses])

    assert marked == ["b-ok", "b-failed", "b-unusable", "b-expiring", "b-deleting"]
    with cat.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(backups.c.id, backups.c.status)).all())
    assert rows["b-running"] == "running"
    assert rows["b-unusable"] == "expiring"
