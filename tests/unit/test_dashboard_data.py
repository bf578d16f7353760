"""The dashboard's page data over a real SQLite catalog: the fleet overview's columns
from the catalog's rows, a bounded number of queries whatever the fleet's size, and the
timeline picture's shapes (WAL runs, the hole between them, windows, backups, points,
drills)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgharbor.catalog.repo import Catalog
from pgharbor.domain.pitr import RestorePoint
from pgharbor.monitor.result import State
from pgharbor.services import Services
from pgharbor.services import backups as backup_service
from pgharbor.services.status import cluster_status
from pgharbor.settings import load_settings
from pgharbor.web.pages import timeline
from pgharbor.web.pages.fleet_data import fleet
from tests.fixtures import dashboard as d
from tests.fixtures.catalogs import init_catalog

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _world(tmp: Path, extra: int = 0) -> tuple[Catalog, dict[str, str]]:
    cat = init_catalog(f"sqlite:///{tmp}/catalog.db")
    t1 = cat.add_target("t1", f"file://{tmp}/t1").id
    ids = {n: d.add_cluster(cat, n, i) for i, n in enumerate(["a", "b", "c"], 1)}
    for i in range(extra):
        ids[f"x{i:03d}"] = d.add_cluster(cat, f"x{i:03d}", 10 + i)
    a = ids["a"]
    d.archive(cat, a, t1, list(range(1, 11)), T0)
    d.add_backup(cat, a, "a-b1", t1, T0 + timedelta(minutes=2), segno=2)
    d.add_backup(cat, a, "a-b2", t1, T0 + timedelta(minutes=6), segno=6)
    d.add_backup(cat, a, "a-b3", t1, T0 + timedelta(minutes=8), segno=8, status="failed")
    d.check_state(cat, a, "archive", State.WARNING, "3 WAL file(s) waiting, oldest for 20m")
    d.check_state(cat, a, "backup", State.OK, "2 usable backup(s)")
    d.check_state(cat, a, "gaps", State.CRITICAL, "1 lost WAL gap")
    d.drill(cat, a, "a-b1")
    d.lost_gap(cat, a, 4, 4)
    d.check_state(cat, ids["b"], "archive", State.OK, "0 WAL file(s) waiting; last archived")
    cat.update_cluster("c", active=False)
    return cat, ids


def test_fleet_rows_from_the_catalog(tmp_path: Path) -> None:
    cat, _ = _world(tmp_path)
    rows = {r.cluster: r for r in fleet(cat).rows}
    assert list(rows) == ["a", "b", "c"]
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a.state, a.backlog, a.usable_backups, a.newest_backup) == ("CRITICAL", 3, 2, "a-b2")
    assert a.last_wal == d.segment(1, 10)
    assert a.last_wal_at == T0 + timedelta(minutes=10)
    assert a.newest_backup_at == T0 + timedelta(minutes=7)
    assert (a.window_start, a.window_end) == (T0 + timedelta(minutes=2), a.last_wal_at)
    assert a.open_gaps == 1 and a.proven_at is not None
    assert a.alert is not None and (a.alert.service, a.alert.state) == ("gaps", "CRITICAL")
    assert (b.state, b.backlog, b.alert, b.last_wal, b.newest_backup) == ("OK", 0, None, None, None)
    assert (b.window_start, b.proven_at, b.usable_backups) == (None, None, 0)
    assert (c.state, c.active, c.checked_at) == ("UNCHECKED", False, None)


def test_fleet_queries_do_not_grow_with_the_fleet(tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    (tmp_path / "big").mkdir()
    small, _ = _world(tmp_path / "small")
    big, _ = _world(tmp_path / "big", extra=40)
    with d.counted(small) as few:
        assert len(fleet(small).rows) == 3
    with d.counted(big) as many:
        assert len(fleet(big).rows) == 43
    assert len(few) == len(many) == 7, (few, many)


def test_timeline_picture(tmp_path: Path) -> None:
    cat, ids = _world(tmp_path)
    svc = Services(load_settings(catalog=f"sqlite:///{tmp_path}/catalog.db", env={}))
    st = cluster_status(svc, "a")
    bks = backup_service.list_backups(svc, "a")
    c = cat.cluster("a")
    point = RestorePoint("before-upgrade", "0/7000100", 1, T0 + timedelta(minutes=7))
    from pgharbor.catalog.drills import DrillRepo

    drills = DrillRepo(cat).for_cluster(ids["a"], "a")
    pic = timeline.picture(
        files=cat.wal_files("a"),
        segment_size=c.wal_segment_size,
        windows=st.windows,
        backups=bks,
        points=[point],
        drills=drills,
        lost=[(1, 4, 4)],
        now=T0 + timedelta(minutes=12),
    )
    assert [tli for tli, _ in pic.lanes] == [1]
    wal = pic.of("wal")
    assert len(wal) == 2  # segments 1-3 and 5-10: the lost segment 4 splits them
    assert "3 segment(s)" in wal[0].title and "6 segment(s)" in wal[1].title
    (gap,) = pic.of("gap")
    assert "1 segment(s) missing" in gap.title and wal[0].x + wal[0].w <= gap.x + 0.1
    assert len(pic.of("backup")) == 2 and len(pic.of("backup-failed")) == 1
    windows = pic.of("window")
    assert windows and all(timeline.LEFT <= w.x <= timeline.WIDTH for w in windows)
    assert [s.title.split(" at ")[0] for s in pic.of("point")] == ["restore point before-upgrade"]
    assert len(pic.of("drill-ok")) == 1 and not pic.of("drill-failed")
    assert pic.ticks and all(timeline.LEFT <= t.x <= timeline.WIDTH for t in pic.ticks)
    # time maps to x in order: the first backup starts left of the second
    b1, b2 = sorted(pic.of("backup"), key=lambda s: s.x)
    assert b1.title.startswith("backup a-b1") and b2.title.startswith("backup a-b2")


def test_targets_page_probes_each_target_once_a_minute(tmp_path: Path) -> None:
    from pgharbor.services import placements
    from pgharbor.web.pages import ops_data

    url = f"sqlite:///{tmp_path}/catalog.db"
    cat = init_catalog(url)
    (tmp_path / "t1").mkdir()
    cat.add_target("t1", f"file://{tmp_path}/t1")
    cat.add_target("t2", f"file://{tmp_path}/nowhere")
    d.add_cluster(cat, "a", 1)
    d.add_cluster(cat, "b", 2)
    svc = Services(load_settings(catalog=url, env={"PGHARBOR_STATE_DIR": str(tmp_path / "s")}))
    placements.add(svc, "a", "t1", 1)
    placements.add(svc, "b", "t1", 1)
    probes = ops_data.ProbeCache(ttl=3600)
    rows = {r.target.name: r for r in ops_data.targets_page(svc, probes)}
    t1, t2 = rows["t1"], rows["t2"]
    assert (t1.clusters, t1.active_placements, t2.clusters) == (["a", "b"], 2, [])
    assert t1.check is not None and t1.check.ok and t1.check.free_bytes
    assert t1.free_pct is not None and 0 < t1.free_pct <= 100
    assert t2.check is not None and not t2.check.ok  # its folder is not there
    first = probes.found["t1"]
    again = {r.target.name: r for r in ops_data.targets_page(svc, probes)}
    assert probes.found["t1"] is first and again["t1"].check is t1.check  # cached
    assert ops_data.targets_page(svc, ops_data.ProbeCache(ttl=0))[0].check is not t1.check
