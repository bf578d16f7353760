"""Encryption at rest on a real PostgreSQL 15: WAL and backups of a cluster with a key are
stored encrypted (no byte of a known marker, nor any data file name, on the targets),
deduplicate under the key, and restore to a server that reads the marker back. A wrong
key is refused with one clear line before anything is written.

The archive runs with compression = "none" here: the marker then reaches a target
verbatim unless it is encrypted, so the byte scan cannot be fooled by compression (the
unit tests cover zstd with a marker in incompressible data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgFactory, server_dir

pytestmark = pytest.mark.integration

MARKER = "pgharbor-marker-c0ffee-93b1"


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def _containing(needle: bytes, *roots: Path) -> list[str]:
    return [str(p) for p in _files(*roots) if needle in p.read_bytes()]


def _config(workdir: Path, harbor: Harbor, name: str, key: Path) -> Path:
    path = workdir / name
    path.write_text(f'compression = "none"\n\n[clusters.c1]\nencryption_key_file = "{key}"\n')
    path.chmod(0o644)
    return path


def _backup(harbor: Harbor) -> dict[str, object]:
    harbor.run("backup", "create", "c1")
    b: dict[str, object] = harbor.json("backup", "list", "c1")[-1]
    assert b["status"] == "ok"
    return b


def test_encrypted_archive_backup_and_restore(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    keys = server_dir(workdir / "keys", 0o700)
    key, wrong = keys / "c1.key", keys / "wrong.key"
    out = harbor.run("key", "generate", str(key)).stdout  # as the postgres OS user
    assert "key id" in out and key.stat().st_mode & 0o777 == 0o600
    harbor.run("key", "generate", str(wrong))
    config = _config(workdir, harbor, "pgharbor.toml", key)
    harbor.env["PGHARBOR_CONFIG"] = str(config)

    t1, t2 = harbor.target("t1"), harbor.target("t2")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1", "t2")
    pg.configure(
        archive_mode=True,
        archive_command=f"{harbor.command()} --config {config} wal push c1 %p",
    )
    pg.restart()
    pg.execute("CREATE TABLE secrets (id int PRIMARY KEY, note text)")
    pg.execute(
        "INSERT INTO secrets SELECT g, %s || '-' || g FROM generate_series(1, 5000) g", (MARKER,)
    )
    pg.pgbench_init(scale=2)
    pg.pgbench(seconds=3, clients=2)
    pg.execute("VACUUM FREEZE")
    first = _backup(harbor)
    second = _backup(harbor)  # nothing changed: dedup under the same key
    logical = int(first["logical_bytes"])  # type: ignore[call-overload]
    assert int(second["stored_bytes"]) < 0.02 * logical, (first, second)  # type: ignore[call-overload]

    pg.execute(
        "INSERT INTO secrets SELECT g, %s || '-' || g FROM generate_series(5001, 6000) g",
        (MARKER,),
    )
    pg.wait_for_archived(pg.switch_wal(), timeout=120)
    assert pg.archiver_stats()["failed_count"] == 0

    # nothing readable on the targets: not the marker, not a data file's name
    files = _files(t1, t2)
    assert any("chunks/packs" in str(p) for p in files) and any("/wal/" in str(p) for p in files)
    assert _containing(MARKER.encode(), t1, t2) == []
    assert _containing(b"PG_VERSION", t1, t2) == []
    assert _containing(b"pg_filenode.map", t1, t2) == []

    # a wrong key: one clear line, nothing restored
    bad = server_dir(workdir / "bad") / "data"
    wrong_config = _config(workdir, harbor, "wrong.toml", wrong)
    line = harbor.fails("--config", str(wrong_config), "restore", "c1", "--pgdata", str(bad))
    assert "was encrypted with key" in line and "the configured key is" in line
    assert not bad.exists() or not any(bad.iterdir())

    dest = server_dir(workdir / "r1") / "data"
    harbor.run("restore", "c1", "--pgdata", str(dest))
    restored = pg_factory.from_datadir(dest, "r1", archive_mode=False)
    restored.start()
    restored.wait_for_recovery_end(timeout=120)
    assert restored.sql_one("SELECT count(*) FROM secrets") == 6000  # WAL after the backup too
    assert restored.sql_one("SELECT note FROM secrets WHERE id = 5999") == f"{MARKER}-5999"
    restored.stop()
    # the scan above would have seen the marker: the server's own files hold it in clear
    assert _containing(MARKER.encode(), dest / "base")

    # garbage collection reads the encrypted manifests with the key
    harbor.run("backup", "delete", "c1", str(first["id"]))
    assert [b["id"] for b in harbor.json("backup", "list", "c1")] == [second["id"]]
