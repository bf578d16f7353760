"""The catalog on SQLite and on a real PostgreSQL: migrations, fleet rows, WAL copies,
and the hot path's plain-SQL access to the same tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pgharbor.catalog import db, lite
from pgharbor.catalog.schema import metadata
from pgharbor.catalog.urls import parse_catalog_url
from pgharbor.errors import CatalogError, Conflict, NotFound
from tests.fixtures.catalogs import SYSID, add_test_cluster, catalog_url, init_catalog  # noqa: F401

pytestmark = pytest.mark.integration


def test_migrations_build_exactly_the_schema(catalog_url: str) -> None:  # noqa: F811
    cat = init_catalog(catalog_url)
    with cat.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_init_twice_and_require_current(catalog_url: str) -> None:  # noqa: F811
    engine, cu = db.make_engine(catalog_url)
    with pytest.raises(CatalogError, match="not initialised"):
        db.require_current(engine, cu)
    assert db.migrate(engine, cu) == (None, db.head_revision())
    assert db.migrate(engine, cu) == (db.head_revision(), db.head_revision())
    db.require_current(engine, cu)


def test_fleet_rows(catalog_url: str) -> None:  # noqa: F811
    cat = init_catalog(catalog_url)
    cat.add_target("t1", "file:///a")
    cat.add_target("t2", "file:///b")
    with pytest.raises(Conflict):
        cat.add_target("t1", "file:///c")
    add_test_cluster(cat)
    with pytest.raises(Conflict, match="already registered"):
        add_test_cluster(cat, "c2")  # same (idc, host, port)
    add_test_cluster(cat, "c2", port=5433)
    cat.add_placement("c1", "t2", 2)
    cat.add_placement("c1", "t1", 1)
    with pytest.raises(Conflict):
        cat.add_placement("c1", "t1", 3)
    assert [(p.target, p.priority) for p in cat.placements("c1")] == [("t1", 1), ("t2", 2)]
    with pytest.raises(Conflict, match="used by placements"):
        cat.remove_target("t1")
    cat.add_target("t3", "file:///d")
    cat.remove_target("t3")
    with pytest.raises(NotFound):
        cat.target("t3")
    with pytest.raises(NotFound):
        cat.cluster("nope")
    c = cat.update_cluster("c1", required_copies=2)
    assert c.required_copies == 2 and c.system_identifier == str(SYSID)


def _row(
    cid: str, tid: str, status: str, when: str = "2026-01-01T00:00:00+00:00"
) -> dict[str, object]:
    return {
        "cluster_id": cid,
        "target_id": tid,
        "name": "000000010000000000000001",
        "timeline": 1,
        "size": 16,
        "stored_size": 8 if status == "ok" else None,
        "checksum": "sha256:ab",
        "archived_at": when,
        "status": status,
        "detail": None if status == "ok" else "down",
    }


def test_hot_path_sql_on_both_catalogs(catalog_url: str) -> None:  # noqa: F811
    cat = init_catalog(catalog_url)
    t1 = cat.add_target("t1", "file:///a")
    t2 = cat.add_target("t2", "file:///b")
    cid = add_test_cluster(cat)
    cat.add_placement("c1", "t2", 2)
    cat.add_placement("c1", "t1", 1)
    cu = parse_catalog_url(catalog_url)
    conn = lite.connect(cu, 3)
    try:
        data = lite.load_cluster(conn, cu.kind, "c1")
        assert data["system_identifier"] == SYSID
        assert [p["target"] for p in data["placements"]] == ["t1", "t2"]
        with pytest.raises(NotFound):
            lite.load_cluster(conn, cu.kind, "nope")
        # failed then ok: ok wins; a late replay of the failure never downgrades it
        lite.upsert_copies(conn, cu.kind, [_row(cid, t1.id, "failed"), _row(cid, t2.id, "ok")])
        conn.commit()
        lite.upsert_copies(conn, cu.kind, [_row(cid, t1.id, "ok"), _row(cid, t1.id, "ok")])
        conn.commit()
        lite.upsert_copies(conn, cu.kind, [_row(cid, t1.id, "failed")])
        conn.commit()
    finally:
        conn.close()
    files = cat.wal_files("c1")
    assert len(files) == 1
    assert sorted((c.target, c.status) for c in files[0].copies) == [("t1", "ok"), ("t2", "ok")]
    assert files[0].missing == []
    assert files[0].copies[0].archived_at == datetime(2026, 1, 1, tzinfo=UTC)
    with cat.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM wal_copies")).scalar() == 2


def test_unreachable_catalog_is_one_clear_error() -> None:
    from pgharbor.errors import CatalogUnavailable

    with pytest.raises(CatalogUnavailable, match="cannot reach the catalog"):
        lite.connect(parse_catalog_url("postgresql://u:secret@127.0.0.1:9/x"), 1)
    engine, cu = db.make_engine("postgresql://u:secret@127.0.0.1:9/x", timeout=1)
    with pytest.raises(CatalogUnavailable) as ei:
        db.require_current(engine, cu)
    assert "secret" not in str(ei.value)


def test_schema_revision_constant_is_the_migration_head() -> None:
    from pgharbor.catalog.schema import SCHEMA_REVISION

    assert db.head_revision() == SCHEMA_REVISION


def test_upgrade_keeps_existing_rows(catalog_url: str) -> None:  # noqa: F811
    from alembic import command

    engine, cu = db.make_engine(catalog_url)
    cfg = db._alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:  # a fleet registered with the first schema
        conn.execute(
            sa.text(
                "INSERT INTO clusters (id, name, idc, platform, software, version, version_num, host, port,"
                " dsn, system_identifier, wal_segment_size, required_copies, active, created_at, modified_at)"
                " VALUES ('c-id', 'c1', 'dc', '', 'postgresql', '15.18', 150018, 'h', 5432, 'dsn', '42',"
                " 16777216, 1, true, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO targets (id, name, url, active, created_at, modified_at)"
                " VALUES ('t-id', 't1', 'file:///x', true, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO placements (cluster_id, target_id, priority, active, created_at, modified_at)"
                " VALUES ('c-id', 't-id', 1, true, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    db.migrate(engine, cu)
    cat = init_catalog(catalog_url)
    c = cat.cluster("c1")
    assert c.archive_async is False and c.system_identifier == "42"
    assert [p.target for p in cat.placements("c1")] == ["t1"]
