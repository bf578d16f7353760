"""Events are written once per state change (catalog.events on a SQLite catalog); --since
takes a timestamp or how long ago."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgharbor.catalog.events import EventRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.errors import UsageError
from pgharbor.monitor.events import NAMES, note_job
from pgharbor.services.context import Services
from pgharbor.services.events import since_time
from pgharbor.settings import load_settings
from tests.fixtures.catalogs import add_test_cluster, init_catalog


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    c = init_catalog(f"sqlite:///{tmp_path}/catalog.db")
    add_test_cluster(c)
    return c


def test_one_event_per_change(cat: Catalog) -> None:
    cid = cat.cluster("c1").id
    repo = EventRepo(cat)
    seen = [repo.transition(cid, "copies", s, f"state {s}", NAMES) for s in (0, 0, 1, 1, 1, 0)]
    assert seen == [False, False, True, False, False, True]
    assert [(e.previous, e.state, e.message) for e in repo.events()] == [
        ("OK", "WARNING", "state 1"),
        ("WARNING", "OK", "state 0"),
    ]
    assert repo.transition(cid, "archive", 2, "failing", NAMES)  # a first state not OK
    assert [(s.service, s.state) for s in repo.states()] == [("archive", 2), ("copies", 0)]
    later = repo.events(cid, since=datetime.now(UTC) + timedelta(hours=1))
    assert later == []


def test_job_events(cat: Catalog, tmp_path: Path) -> None:
    svc = Services(load_settings(catalog=f"sqlite:///{tmp_path}/catalog.db"))
    cid = cat.cluster("c1").id
    note_job(svc, cid, "backup", True, {"backup": {}}, None)  # done: nothing
    note_job(svc, cid, "backup", False, None, "cannot connect")
    note_job(svc, cid, "expire", False, None, "expire c1 refused: only 1 usable backup")
    note_job(
        svc, cid, "backup", True, {"expire": {"ok": False, "error": "expire c1 refused: x"}}, None
    )
    got = [(e.source, e.kind, e.state) for e in EventRepo(cat).events()]
    assert got == [
        ("job", "backup", "failed"),
        ("job", "expire", "refused"),
        ("job", "expire", "refused"),
    ]


def test_since() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert since_time("2h", now) == now - timedelta(hours=2)
    assert since_time("7d", now) == now - timedelta(days=7)
    assert since_time("2026-12-01 10:00:00+00") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert since_time(None) is None
    with pytest.raises(UsageError):
        since_time("yesterday")


def test_events_go_with_their_cluster(cat: Catalog) -> None:
    cid = cat.cluster("c1").id
    repo = EventRepo(cat)
    repo.transition(cid, "copies", 1, "missing", NAMES)
    repo.add(cid, "job", "backup", "failed", "backup job failed")
    cat.delete_cluster(cid)
    assert repo.events() == [] and repo.states() == []
