"""Base backups on real PostgreSQL 15: deduplication, corrupted chunks, exact chunk
garbage collection, and failed backups that can never be picked."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgharbor.backup.chunkmap import chunks_of
from pgharbor.backup.chunks import ChunkStore
from pgharbor.backup.manifest import BackupManifest, FileEntry
from pgharbor.storage import open_storage
from pgharbor.storage.layout import manifest_key
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, PgFactory, server_dir

pytestmark = pytest.mark.integration


def _backup(harbor: Harbor) -> dict[str, object]:
    harbor.run("backup", "create", "c1")
    b: dict[str, object] = harbor.json("backup", "list", "c1")[-1]
    assert b["status"] == "ok"
    return b


def _store(root: Path) -> ChunkStore:
    store = ChunkStore(open_storage(f"file://{root}"))
    store.load()
    return store


def _manifest(root: Path, backup_id: str) -> BackupManifest:
    return BackupManifest.unseal((root / manifest_key("c1", backup_id)).read_bytes())


def _chunk_ids(root: Path, m: BackupManifest, f: FileEntry | None = None) -> list[bytes]:
    """A file's chunk ids (every chunk of the backup without f), from its chunk map."""
    ids = m.chunkmap(lambda key: (root / key).read_bytes(), None)
    if f is None:
        return list(ids)
    return ids.ids(f.first_chunk, chunks_of(f.size, m.chunk_size))


def _setup(harbor: Harbor, pg: PgCluster, *targets: str) -> list[Path]:
    roots = [harbor.target(t) for t in targets]
    harbor.register(pg, "c1", *targets)
    harbor.archive_to(pg)
    return roots


def test_dedup_unchanged_and_ten_percent_change(
    harbor: Harbor, pg_cluster: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    _setup(harbor, pg_cluster, "t1")
    pg_cluster.pgbench_init(scale=5)
    pg_cluster.execute("VACUUM FREEZE")  # settle hint bits, as a maintained database would be
    first = _backup(harbor)
    second = _backup(harbor)
    logical = int(first["logical_bytes"])  # type: ignore[call-overload]
    assert int(second["stored_bytes"]) < 0.02 * logical  # type: ignore[call-overload]
    table = int(pg_cluster.sql_one("SELECT pg_relation_size('pgbench_accounts')"))
    pg_cluster.execute(
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 50000"
    )  # 10% of 500000
    pg_cluster.execute("CHECKPOINT")
    third = _backup(harbor)
    added = int(third["stored_bytes"])  # type: ignore[call-overload]
    with capsys.disabled():
        print(
            f"\n[dedup] logical {logical} B; unchanged +{second['stored_bytes']} B; "
            f"after 10% update of a {table} B table: +{added} B"
        )
    assert 0 < added < 0.3 * logical  # roughly the change, not the whole database


def test_corrupt_chunk_falls_back_then_fails_clearly(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    pg = pg_factory()
    t1, t2 = _setup(harbor, pg, "t1", "t2")
    pg.execute(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g"
    )
    b = _backup(harbor)
    pg.wait_for_archived(pg.switch_wal())
    m = _manifest(t1, str(b["id"]))
    victim = next(f for f in m.files if f.type == "f" and f.size > 100_000)
    store = _store(t1)
    first = _chunk_ids(t1, m, victim)[0]
    loc = store.index[first]
    pack = t1 / "chunks" / "packs" / loc.pack[:2] / loc.pack
    data = bytearray(pack.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0xFF
    pack.write_bytes(bytes(data))

    dest = server_dir(workdir / "r1") / "data"
    proc = harbor.run("restore", "c1", "--pgdata", str(dest))
    assert "read from t2" in proc.stderr
    restored = pg_factory.from_datadir(dest, "r1", archive_mode=False)
    restored.start()
    restored.wait_for_recovery_end(timeout=120)
    assert restored.sql_one("SELECT count(*) FROM t") == 20000
    restored.stop()

    store2 = _store(t2)
    loc2 = store2.index[first]
    (t2 / "chunks" / "packs" / loc2.pack[:2] / loc2.pack).write_bytes(b"")  # gone bad too
    dest2 = server_dir(workdir / "r2") / "data"
    line = harbor.fails("restore", "c1", "--pgdata", str(dest2))
    assert victim.path in line and "no good copy" in line


def test_delete_frees_exactly_the_unshared_chunks(harbor: Harbor, pg_cluster: PgCluster) -> None:
    (t1,) = _setup(harbor, pg_cluster, "t1")
    pg_cluster.execute("CREATE TABLE a AS SELECT g, md5(g::text) FROM generate_series(1, 50000) g")
    b1 = str(_backup(harbor)["id"])
    pg_cluster.execute(
        "CREATE TABLE b AS SELECT g, md5((g * 7)::text) FROM generate_series(1, 50000) g"
    )
    pg_cluster.execute("DROP TABLE a")
    pg_cluster.execute("CHECKPOINT")
    b2 = str(_backup(harbor)["id"])
    used1 = set(_chunk_ids(t1, _manifest(t1, b1)))
    used2 = set(_chunk_ids(t1, _manifest(t1, b2)))
    assert used1 - used2 and used1 & used2  # some shared, some not
    assert set(_store(t1).index) == used1 | used2

    out = harbor.run("backup", "delete", "c1", b1).stdout
    assert f"{len(used1 - used2)} chunks freed" in out
    assert set(_store(t1).index) == used2  # exactly b2's chunks remain
    assert not (t1 / "c1" / "backups" / b1).exists() or not any(
        p.is_file() for p in (t1 / "c1" / "backups" / b1).rglob("*")
    )  # manifest and chunk map gone
    assert [b["id"] for b in harbor.json("backup", "list", "c1")] == [b2]

    harbor.run("backup", "delete", "c1", b2)
    assert len(_store(t1).index) == 0
    assert list((t1 / "chunks" / "packs").rglob("*.*")) == [] and not any(
        p.is_file() for p in (t1 / "chunks" / "packs").rglob("*")
    )


def test_failed_backup_is_never_usable(
    harbor: Harbor, pg_cluster: PgCluster, workdir: Path
) -> None:
    (t1,) = _setup(harbor, pg_cluster, "t1")
    pg_cluster.configure(
        archive_command="false"
    )  # archiving broken: the backup's WAL never arrives
    pg_cluster.reload()
    line = harbor.fails("backup", "create", "c1", "--wal-timeout", "3")
    assert "was not archived within 3 s" in line
    (b,) = harbor.json("backup", "list", "c1")
    assert b["status"] == "failed" and "not archived" in b["error"]
    folder = t1 / "c1" / "backups" / str(b["id"])
    assert not [p for p in folder.rglob("*") if p.is_file()]  # no manifest, no chunk map
    assert not list((t1 / "chunks" / "refs").rglob("*")) or all(
        p.is_dir() for p in (t1 / "chunks" / "refs").rglob("*")
    )
    dest = server_dir(workdir / "r") / "data"
    assert "no usable backup" in harbor.fails("restore", "c1", "--pgdata", str(dest))
    assert not dest.exists() or not any(dest.iterdir())
    # the failed backup can be deleted; its orphan chunks are collected
    harbor.run("backup", "delete", "c1", str(b["id"]))
    assert len(_store(t1).index) == 0


def test_tablespace_backup_and_restore_with_map(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    pg = pg_factory()
    _setup(harbor, pg, "t1")
    ts = server_dir(workdir / "ts_orig", 0o700)
    pg.execute(f"CREATE TABLESPACE extra LOCATION '{ts}'")
    pg.execute("CREATE TABLE far (id int, v text) TABLESPACE extra")
    pg.execute("INSERT INTO far SELECT g, md5(g::text) FROM generate_series(1, 30000) g")
    b = _backup(harbor)
    m = _manifest(harbor.workdir / "targets" / "t1", str(b["id"]))
    assert [t.location for t in m.tablespaces] == [str(ts)]
    pg.execute("INSERT INTO far SELECT g, 'after' FROM generate_series(30001, 30500) g")
    pg.wait_for_archived(pg.switch_wal())

    dest = server_dir(workdir / "r") / "data"
    new_ts = workdir / "ts_new"
    harbor.run("restore", "c1", "--pgdata", str(dest), "--tablespace-map", f"{ts}={new_ts}")
    assert (dest / "pg_tblspc" / m.tablespaces[0].oid).resolve() == new_ts
    assert any(new_ts.iterdir())
    from tests.fixtures.postgres import BINDIR, run_as_server_user

    run_as_server_user([BINDIR / "pg_verifybackup", "-n", "-i", "tablespace_map", dest])
    pg.stop()  # the original tablespace stays untouched; the copy uses its own folder
    restored = pg_factory.from_datadir(dest, "r", archive_mode=False)
    restored.start()
    restored.wait_for_recovery_end(timeout=120)
    assert restored.sql_one("SELECT count(*) FROM far") == 30500
    assert restored.sql_one(
        "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'extra'"
    ) == str(new_ts)
    line = harbor.fails(
        "restore",
        "c1",
        "--pgdata",
        str(server_dir(workdir / "r2") / "data"),
        "--tablespace-map",
        "/nope=/x",
    )
    assert "names no tablespace" in line
