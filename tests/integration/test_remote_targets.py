"""The WAL path through remote targets: a real OpenSSH sshd (priority 1) and an S3 API
server (priority 2) on loopback, with real PostgreSQL 15 archiving and replaying."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.harbor import Harbor, count_rows
from tests.fixtures.postgres import PgCluster, PgFactory, server_dir
from tests.fixtures.s3server import S3Server
from tests.fixtures.sshd import SSHDServer

pytestmark = pytest.mark.integration


@pytest.fixture
def remote(harbor: Harbor, sshd_server: SSHDServer, s3_server: S3Server) -> dict[str, Any]:
    sshd_server.start()
    ssh_root = sshd_server.make_root()
    bucket = s3_server.new_bucket()
    harbor.env.update(s3_server.write_aws_files().env)  # archive_command runs as postgres
    harbor.run("target", "add", "ssh1", sshd_server.url(ssh_root, timeout=3))
    harbor.run("target", "add", "s3", bucket.url)
    return {"ssh_root": ssh_root, "bucket": bucket, "sshd": sshd_server}


def _on_ssh(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "c1" / "wal").rglob("*") if p.is_file()}


def _on_s3(remote: dict[str, Any]) -> set[str]:
    storage = remote["bucket"].open()
    return {o.key.rsplit("/", 1)[1] for o in storage.list("c1/wal/")}


def _register(harbor: Harbor, pg: PgCluster, required: int = 1) -> None:
    harbor.register(pg, "c1", "ssh1", "s3", required=required)


def test_archive_fetch_and_standby_through_ssh_and_s3(
    harbor: Harbor, remote: dict[str, Any], pg_factory: PgFactory, workdir: Path
) -> None:
    primary = pg_factory("primary")
    _register(harbor, primary)
    ref = workdir / "postgres-bytes"
    harbor.archive_to(primary, keep_copy=ref)
    primary.execute("CREATE TABLE t (id int)")
    backup = primary.basebackup(workdir / "standby" / "data", "-X", "none")
    primary.pgbench_init(scale=2)
    primary.execute("INSERT INTO t SELECT generate_series(1, 5000)")
    last = primary.switch_wal()
    primary.wait_for_archived(last, timeout=180)
    assert primary.archiver_stats()["failed_count"] == 0
    archived = {p.name for p in ref.iterdir()}
    assert archived <= set(_on_ssh(remote["ssh_root"])) and archived <= _on_s3(remote)
    out = server_dir(workdir / "out")
    for name in sorted(archived):
        harbor.run("wal", "fetch", "c1", name, str(out / name))
        assert (out / name).read_bytes() == (ref / name).read_bytes()
    standby = harbor.archive_standby(pg_factory, backup)
    standby.wait_until("replay", lambda: count_rows(standby, "t") == 5000, 120, standby.log_tail)


def test_ssh_down_mid_load_s3_carries_on_then_sync_fills_the_gap(
    harbor: Harbor, remote: dict[str, Any], pg_cluster: PgCluster, workdir: Path
) -> None:
    _register(harbor, pg_cluster, required=1)
    ref = workdir / "postgres-bytes"
    harbor.archive_to(pg_cluster, keep_copy=ref)
    pg_cluster.pgbench_init(scale=2)
    load = threading.Thread(target=pg_cluster.pgbench, kwargs={"seconds": 10})
    load.start()
    pg_cluster.wait_for_archived(pg_cluster.switch_wal(), timeout=120)
    remote["sshd"].stop()  # the archive server goes away mid-load
    try:
        for _ in range(3):
            pg_cluster.switch_wal()
        load.join()
        last = pg_cluster.switch_wal()
        pg_cluster.wait_for_archived(last, timeout=180)
        assert pg_cluster.archiver_stats()["failed_count"] == 0  # S3 alone was enough
        files = harbor.wal_files()
        gaps = {n for n, f in files.items() if f["missing"] == ["ssh1"]}
        assert len(gaps) >= 4
    finally:
        remote["sshd"].start()
    out = harbor.run("wal", "sync", "c1").stdout
    assert "ssh1: " in out
    archived = {p.name for p in ref.iterdir()}
    on_ssh = _on_ssh(remote["ssh_root"])
    assert archived <= set(on_ssh) and archived <= _on_s3(remote)
    assert not [f for f in harbor.wal_files().values() if f["missing"]]
    s3 = remote["bucket"].open()
    fetched = server_dir(workdir / "out")
    for name in sorted(archived):  # byte-identical on both: fetch each through one target
        harbor.run("wal", "fetch", "c1", name, str(fetched / name))
        assert (fetched / name).read_bytes() == (ref / name).read_bytes()
        assert s3.exists(
            f"c1/wal/{name[:16] if not name.endswith('.history') else 'history'}/{name}"
        )


def test_two_required_copies_with_a_target_down(
    harbor: Harbor, remote: dict[str, Any], pg_cluster: PgCluster
) -> None:
    _register(harbor, pg_cluster, required=2)
    harbor.archive_to(pg_cluster)
    pg_cluster.wait_for_archived(pg_cluster.switch_wal(), timeout=120)
    remote["sshd"].stop()
    try:
        pending = pg_cluster.switch_wal()
        pg_cluster.wait_until(
            "archive failures", lambda: pg_cluster.archiver_stats()["failed_count"] > 0, 90, str
        )
        assert (pg_cluster.pgdata / "pg_wal" / "archive_status" / f"{pending}.ready").exists()
        assert "1 of 2 required copies" in pg_cluster.log_tail(200)
    finally:
        remote["sshd"].start()
    pg_cluster.wait_for_archived(pending, timeout=180)  # resumes by itself, nothing lost
    assert pending in _on_ssh(remote["ssh_root"]) and pending in _on_s3(remote)
