"""The fleet overview's aggregate queries agree with the per-cluster services the CLI
uses (``pgharbor status``: last archived file, usable and newest backup, the oldest
start; the drills' last pass), on SQLite and on a real PostgreSQL catalog, for clusters
with WAL on two timelines and two targets, failed backups, failed drills, and a
cluster with nothing at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgharbor.services import Services
from pgharbor.services.status import cluster_status
from pgharbor.settings import load_settings
from pgharbor.web.pages.fleet_data import fleet
from tests.fixtures import dashboard as d
from tests.fixtures.catalogs import catalog_url, init_catalog  # noqa: F401

pytestmark = pytest.mark.integration
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def test_fleet_agrees_with_status(catalog_url: str) -> None:  # noqa: F811
    cat = init_catalog(catalog_url)
    t1 = cat.add_target("t1", "file:///nonexistent/t1").id
    t2 = cat.add_target("t2", "file:///nonexistent/t2").id
    ids = {f"c{i}": d.add_cluster(cat, f"c{i}", i) for i in range(1, 6)}
    for i, (name, cid) in enumerate(ids.items()):
        if name == "c5":
            continue  # nothing archived, no backup
        start = T0 + timedelta(hours=i)
        d.archive(cat, cid, t1, list(range(1, 30 + 5 * i)), start)
        d.archive(cat, cid, t2, list(range(1, 10)), start)
        if name in ("c2", "c4"):  # a promotion: timeline 2 goes on
            d.archive(cat, cid, t1, list(range(30 + 5 * i, 40 + 5 * i)), start, timeline=2)
        for k in range(i + 1):
            d.add_backup(
                cat, cid, f"{name}-b{k}", t1, start + timedelta(minutes=3 + 4 * k), segno=3 + 4 * k
            )
        d.add_backup(cat, cid, f"{name}-bad", t1, start + timedelta(minutes=20), status="failed")
        d.drill(cat, cid, f"{name}-b0", ok=name != "c3")
    svc = Services(load_settings(catalog=catalog_url, env={}))
    rows = {r.cluster: r for r in fleet(cat).rows}
    assert list(rows) == list(ids)
    for name in ids:
        st, row = cluster_status(svc, name), rows[name]
        assert row.last_wal == st.last_archived, name
        assert row.last_wal_at == st.last_archived_at, name
        b = st.backups
        assert b is not None
        assert (row.usable_backups, row.newest_backup) == (b.usable, b.newest), name
        assert (row.newest_backup_at, row.window_start) == (
            b.newest_stop_time,
            b.oldest_start_time if st.last_archived_at else None,
        ), name
        assert row.proven_at == st.proven_at, name
        assert (row.proven_at is None) == (name in ("c3", "c5")), name
