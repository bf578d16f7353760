"""The PostgreSQL test fixtures (tests/fixtures/postgres.py) against real servers."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from tests.fixtures.postgres import PgCluster, PgClusterError, PgFactory, PgTimeoutError, server_dir

pytestmark = pytest.mark.integration

SEGMENT = re.compile(r"[0-9A-F]{24}")


def test_cluster_starts_and_answers_sql(pg_cluster: PgCluster) -> None:
    assert pg_cluster.is_running()
    assert pg_cluster.sql("SELECT 1, 'a'") == [(1, "a")]
    assert str(pg_cluster.sql_one("SHOW server_version_num")).startswith("15")
    assert pg_cluster.sql_one("SHOW fsync") == "off"
    assert pg_cluster.sql_one("SHOW wal_level") == "replica"
    assert pg_cluster.sql_one("SELECT current_user") == "postgres"
    assert not pg_cluster.is_in_recovery()
    with psycopg.connect(pg_cluster.tcp_dsn) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (pg_cluster.port,)
    out = pg_cluster.psql("CREATE TABLE t (i int);\nINSERT INTO t VALUES (1), (2);\nSELECT 42;")
    assert "42" in out
    assert pg_cluster.sql("SELECT i FROM t WHERE i > %s", [1]) == [(2,)]
    with pytest.raises(PgClusterError, match="no_such_table"):
        pg_cluster.psql("SELECT 1;\nSELECT * FROM no_such_table;")
    sysid = pg_cluster.sql_one("SELECT system_identifier FROM pg_control_system()")
    assert pg_cluster.system_identifier() == sysid
    assert pg_cluster.controldata()["Database cluster state"] == "in production"


def test_configure_and_reload(pg_factory: PgFactory) -> None:
    pg = pg_factory(work_mem="3MB", log_connections=True)
    assert pg.sql_one("SHOW work_mem") == "3MB"
    assert pg.sql_one("SHOW log_connections") == "on"
    pg.configure(work_mem="8MB", application_name="it's a \\ test", log_connections=None)
    pg.reload()
    assert pg.sql_one("SHOW work_mem") == "8MB"
    assert pg.sql_one("SHOW application_name") == "it's a \\ test"
    assert pg.sql_one("SHOW log_connections") == "off"
    pg.configure(shared_buffers="24MB")
    pg.restart()
    assert pg.sql_one("SHOW shared_buffers") == "24MB"


def test_start_failure_reports_the_log(pg_cluster: PgCluster) -> None:
    pg_cluster.stop()
    pg_cluster.configure(shared_buffers="lots")
    with pytest.raises(PgClusterError, match=r"(?s)did not start.*\"shared_buffers\": \"lots\""):
        pg_cluster.start(timeout=20)
    assert not pg_cluster.is_running()
    pg_cluster.configure(shared_buffers=None).start()
    assert pg_cluster.sql_one("SHOW shared_buffers") == "128MB"  # the built-in default


def test_switch_wal_and_archive_command(pg_factory: PgFactory, workdir: Path) -> None:
    archive = server_dir(workdir / "archive")
    pg = pg_factory(archive_mode="on", archive_command=f"cp %p {archive}/%f")
    first = pg.switch_wal()
    segment = pg.switch_wal()
    assert SEGMENT.fullmatch(first) and SEGMENT.fullmatch(segment)
    assert first.startswith("00000001")
    assert int(segment, 16) == int(first, 16) + 1
    pg.wait_for_archived(segment, timeout=30)
    assert (archive / first).is_file()
    assert (archive / segment).stat().st_size == 16 * 1024 * 1024
    stats = pg.archiver_stats()
    assert stats["archived_count"] >= 1
    assert stats["failed_count"] == 0
    future = f"{int(segment, 16) + 5:024X}"
    with pytest.raises(PgTimeoutError, match=r"(?s)pg_stat_archiver.*server\.log"):
        pg.wait_for_archived(future, timeout=0.5)


def test_basebackup_standby_streams(pg_factory: PgFactory, workdir: Path) -> None:
    primary = pg_factory("primary")
    primary.execute("CREATE TABLE t (i int)")
    primary.execute("INSERT INTO t VALUES (1)")
    pgdata = primary.basebackup(workdir / "standby-data")
    (pgdata / "standby.signal").touch()
    standby = pg_factory.from_datadir(pgdata, "standby", primary_conninfo=primary.dsn)
    assert standby.port != primary.port
    standby.start()
    assert standby.is_in_recovery()
    assert standby.system_identifier() == primary.system_identifier()
    primary.execute("INSERT INTO t VALUES (2)")
    standby.wait_for_replay(primary.current_lsn(), timeout=30)
    assert standby.sql("SELECT i FROM t ORDER BY i") == [(1,), (2,)]
    assert primary.sql_one("SELECT count(*) FROM pg_stat_replication") == 1

    helper_made = pg_factory.standby(primary)  # pg_basebackup -R
    primary.execute("INSERT INTO t VALUES (3)")
    helper_made.wait_for_replay(primary.current_lsn(), timeout=30)
    assert helper_made.sql_one("SELECT max(i) FROM t") == 3
    assert len({primary.port, standby.port, helper_made.port}) == 3


def test_kill9_then_crash_recovery_and_pgbench(pg_cluster: PgCluster) -> None:
    pg_cluster.pgbench_init(scale=1)
    report = pg_cluster.pgbench(transactions=20, clients=2)
    assert "number of transactions actually processed: 40" in report
    pg_cluster.kill9()
    assert not pg_cluster.is_running()
    pg_cluster.start()
    assert pg_cluster.sql_one("SELECT count(*) FROM pgbench_accounts") == 100_000
    assert "not properly shut down" in pg_cluster.log_tail(200)


def test_catalog_pg_url_is_a_fresh_database(catalog_pg_url: str) -> None:
    assert catalog_pg_url.startswith("postgresql://postgres@/")
    with psycopg.connect(catalog_pg_url, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
        conn.execute("CREATE TABLE hosts (name text PRIMARY KEY)")
        conn.execute("INSERT INTO hosts VALUES ('db1')")
    engine = sqlalchemy.create_engine(catalog_pg_url.replace("postgresql:", "postgresql+psycopg:"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT name FROM hosts")).all() == [("db1",)]
            dbname = conn.execute(sqlalchemy.text("SELECT current_database()")).scalar_one()
        assert catalog_pg_url.split("/")[3].split("?")[0] == dbname
    finally:
        engine.dispose()
