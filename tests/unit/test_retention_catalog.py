"""Retention in the catalog (SQLite, no server): the policy with its fleet default, holds,
the expiring mark, and an expire dry run read from real catalog rows."""

from __future__ import annotations

import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.repo import Catalog, now
from pgharbor.catalog.retention import RetentionRepo
from pgharbor.catalog.schema import backup_holds, backups
from pgharbor.errors import Conflict, GuardRefused, NotFound, UsageError
from pgharbor.render.output import to_jsonable
from pgharbor.services import Services, retention
from pgharbor.settings import load_settings
from tests.fixtures.catalogs import add_test_cluster, init_catalog


def _env(tmp: Path) -> tuple[Catalog, Services, str]:
    url = f"sqlite:///{tmp}/catalog.db"
    cat = init_catalog(url)
    cid = add_test_cluster(cat)
    cat.add_target("t1", f"file://{tmp}/t1")
    svc = Services(load_settings(catalog=url, env={"PGHARBOR_STATE_DIR": str(tmp / "state")}))
    return cat, svc, cid


def _backups(cat: Catalog, cid: str, n: int) -> list[str]:
    repo, t = BackupRepo(cat), cat.target("t1")
    ids = []
    for i in range(n):
        bid = f"b{i}"
        repo.begin(bid, cid, "l", [t.id], socket.gethostname(), os.getpid())
        stop = now() - timedelta(hours=n - i)
        repo.finish(bid, start_lsn=f"0/{(i + 1) * 2:X}000028", timeline=1, stop_time=stop)
        ids.append(bid)
    return ids


def test_policy_falls_back_to_the_fleet_default(tmp_path: Path) -> None:
    _, svc, _ = _env(tmp_path)
    assert not retention.show_policy(svc, "c1").ok  # nothing set: expire would refuse
    retention.set_policy(svc, None, keep_last=7, recovery_window="2w")
    v = retention.set_policy(svc, "c1", recovery_window="36h", min_backups=2)
    assert (v.keep_last, v.recovery_window, v.min_backups) == (None, "1d12h", 2)
    assert v.effective is not None
    assert (v.effective.keep_last, v.effective.recovery_window) == (7, timedelta(hours=36))
    off = retention.set_policy(svc, "c1", keep_last=0)  # off here, whatever the default says
    assert off.effective is not None and off.effective.keep_last is None
    assert retention.show_policy(svc, None).recovery_window == "2w"
    with pytest.raises(UsageError):
        retention.set_policy(svc, "c1", min_backups=0)
    with pytest.raises(UsageError):
        retention.set_policy(svc, "c1", recovery_window="7 days")
    with pytest.raises(UsageError):
        retention.set_policy(svc, "c1")
    with pytest.raises(NotFound):
        retention.set_policy(svc, "nope", keep_last=1)


def test_holds_and_the_expiring_mark(tmp_path: Path) -> None:
    cat, svc, cid = _env(tmp_path)
    b0, b1, b2 = _backups(cat, cid, 3)
    BackupRepo(cat).begin("run", cid, "l", [], socket.gethostname(), os.getpid())
    h = retention.hold(svc, "c1", b0, reason="audit", until="2099-01-01 00:00+00")
    assert h.held and h.until is not None and h.until.year == 2099
    with pytest.raises(UsageError):
        retention.hold(svc, "c1", b1, reason="  ")
    with pytest.raises(UsageError):
        retention.hold(svc, "c1", b1, reason="x", until="2099-01-01 00:00")  # no time zone
    with pytest.raises(Conflict):
        retention.hold(svc, "c1", "run", reason="x")  # only a usable backup is held
    repo = RetentionRepo(cat)
    assert repo.mark_expiring([b1, "run"]) == [b1]  # a running backup is never marked
    with pytest.raises(Conflict):
        retention.hold(svc, "c1", b1, reason="too late")
    assert BackupRepo(cat).get("c1", b1).status == "expiring"
    assert retention.release(svc, "c1", b0).held is False
    with pytest.raises(NotFound):
        retention.release(svc, "c1", b0)
    retention.hold(svc, "c1", b2, reason="lapsed", until="2001-01-01 00:00+00")
    assert repo.held(b2, now()) is None  # a hold past its time no longer keeps anything
    BackupRepo(cat).delete(b2)  # a held row goes with its backup (no dangling hold)
    cat.forget_cluster("c1")  # and everything with the cluster
    with cat.engine.connect() as conn:
        for table in (backups, backup_holds):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_expire_dry_run_from_the_catalog(tmp_path: Path) -> None:
    cat, svc, cid = _env(tmp_path)
    ids = _backups(cat, cid, 5)
    with pytest.raises((UsageError, GuardRefused)):  # as root, or (not root) with no policy
        retention.expire(svc, "c1")
    retention.set_policy(svc, "c1", keep_last=2)
    retention.hold(svc, "c1", ids[1], reason="keep")
    run = retention.expire(svc, "c1", dry_run=True).runs[0]
    assert {v.id: v.action for v in run.backups} == {
        "b0": "delete",
        "b1": "keep (hold)",
        "b2": "delete",
        "b3": "keep (keep-last)",
        "b4": "keep (min-backups, keep-last)",
    }
    assert run.ok and not run.guards
    retention.set_policy(svc, None, recovery_window="90m")  # the default's window applies
    fleet = retention.expire(svc, None, dry_run=True)
    assert [r.cluster for r in fleet.runs] == ["c1"]
    shown = json.loads(json.dumps(to_jsonable(fleet)))
    assert shown["runs"][0]["policy"]["recovery_window"] == 5400
    assert shown["ok"] is True
    # b3 stopped 2 h ago: the anchor before the 90 min window, b4 inside it
    assert shown["runs"][0]["backups"][3]["rules"] == ["keep-last", "window-anchor"]
    assert BackupRepo(cat).get("c1", "b0").status == "ok"  # a dry run changes nothing
