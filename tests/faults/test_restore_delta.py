"""`restore --delta` into a data directory that was used before (D9, D10): symlinks it
holds are replaced, never written through; stale WAL and async markers go; a restore
killed at any step, or failing, leaves a directory PostgreSQL refuses to start, and
running it again finishes the job.

One primary and one backup for the module; each test starts from a fresh copy that was
restored, started (promoted, so it has WAL of its own) and stopped."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import (
    BINDIR,
    PgCluster,
    PgClusterError,
    _chown,
    run_as_server_user,
    server_dir,
)

pytestmark = pytest.mark.integration

ROWS = 2000
STEPS = [
    "restore.disarmed",
    "restore.pruned",
    "restore.writing",
    "restore.written",
    "restore.configured",
    "restore.before_arm",
]


@dataclass
class Setup:
    base: Path
    harbor: Harbor
    clusters: list[PgCluster] = field(default_factory=list)

    def restore(self, pgdata: Path, *more: str, check: bool = True) -> str:
        proc = self.harbor.run("restore", "c1", "--pgdata", str(pgdata), *more, check=check)
        return proc.stdout + proc.stderr

    def fresh(self, name: str) -> Path:
        """A restored copy that was started (it wrote WAL of its own) and stopped."""
        pgdata = server_dir(self.base / name) / "data"
        self.restore(pgdata)
        pg = self.server(pgdata)
        pg.start()
        pg.wait_for_recovery_end(timeout=120)
        pg.stop()
        return pgdata

    def server(self, pgdata: Path) -> PgCluster:
        pg = PgCluster.from_datadir(pgdata, pgdata.with_name("run"))
        self.clusters.append(pg)
        return pg

    def check_restored(self, pgdata: Path) -> None:
        run_as_server_user([BINDIR / "pg_verifybackup", "-n", pgdata])
        pg = self.server(pgdata)
        pg.start()
        pg.wait_for_recovery_end(timeout=120)
        assert int(pg.sql_one("SELECT count(*) FROM t")) == ROWS
        pg.stop()

    def will_not_start(self, pgdata: Path) -> None:
        with pytest.raises(PgClusterError) as info:
            self.server(pgdata).start(timeout=20)
        assert "global/pg_control" in str(info.value)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-delta-", dir="/tmp"))
    harbor = Harbor(base)
    harbor.run("init")
    harbor.target("t1")
    primary = PgCluster(base / "primary", name="primary").initdb()
    primary.start()
    s = Setup(base, harbor)
    try:
        harbor.register(primary, "c1", "t1")
        harbor.archive_to(primary)
        primary.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        harbor.run("backup", "create", "c1")
        primary.execute(f"INSERT INTO t SELECT generate_series(1001, {ROWS})")
        primary.wait_for_archived(primary.switch_wal(), timeout=120)
        primary.stop()  # the archive is all the copies need
        yield s
    finally:
        for pg in [*s.clusters, primary]:
            with contextlib.suppress(Exception):
                pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "d"
        for p in [root, *root.rglob("*")]
    }


def test_delta_replaces_symlinks_and_removes_stale_wal(setup: Setup) -> None:
    pgdata = setup.fresh("links")
    outside = server_dir(setup.base / "outside")
    (outside / "victim.conf").write_text("# someone else's file\n")
    shutil.move(pgdata / "pg_xact", outside / "xact")  # as an admin moving it to another disk
    (pgdata / "pg_xact").symlink_to(outside / "xact")
    (pgdata / "postgresql.conf").unlink()
    (pgdata / "postgresql.conf").symlink_to(outside / "victim.conf")
    wal = server_dir(outside / "wal")
    (wal / "000000010000000000000099").write_bytes(b"stale")
    server_dir(wal / "pgharbor-spool" / "done")
    (wal / "pgharbor-spool" / "done" / "000000010000000000000099").touch()
    shutil.rmtree(pgdata / "pg_wal")
    (pgdata / "pg_wal").symlink_to(wal)
    (pgdata / "base" / "stale-file").write_text("x")
    _chown(outside, recursive=True)  # writable by the restore's OS user: only care stops it
    before = _tree(outside)

    out = setup.restore(pgdata, "--delta")

    assert _tree(outside) == before  # nothing outside was written, truncated or removed
    for name in ("postgresql.conf", "pg_xact", "pg_wal"):
        assert not (pgdata / name).is_symlink()
        assert f"{pgdata / name} was a symlink to" in out
    assert (pgdata / "pg_xact").is_dir() and (pgdata / "postgresql.conf").is_file()
    assert sorted(p.name for p in (pgdata / "pg_wal").iterdir()) == ["archive_status"]
    assert not (pgdata / "base" / "stale-file").exists()
    setup.check_restored(pgdata)


def test_killed_at_every_step_never_starts_and_rerun_finishes(setup: Setup) -> None:
    pgdata = setup.fresh("killed")
    for step in STEPS:
        setup.harbor.env["PGHARBOR_FAULT"] = f"{step}=kill"
        try:
            proc = setup.harbor.run(
                "restore", "c1", "--pgdata", str(pgdata), "--delta", check=False
            )
        finally:
            del setup.harbor.env["PGHARBOR_FAULT"]
        assert proc.returncode in (-9, 137), (step, proc.returncode, proc.stderr)  # SIGKILL
        assert not (pgdata / "global" / "pg_control").exists(), step
        assert not (pgdata / "recovery.signal").exists() or step in STEPS[-2:], step
        setup.will_not_start(pgdata)
    setup.restore(pgdata, "--delta")
    setup.check_restored(pgdata)


def test_failed_delta_says_so_in_one_line_and_never_starts(setup: Setup) -> None:
    pgdata = setup.fresh("failed")
    victim = next(p for p in (pgdata / "base").rglob("*") if p.is_file() and p.stat().st_size)
    victim.chmod(0)  # the server's OS user can no longer open it
    line = setup.harbor.fails("restore", "c1", "--pgdata", str(pgdata), "--delta", code=14)
    assert f"{victim}: Permission denied" in line and "is incomplete and will not start" in line
    for name in ("recovery.signal", "backup_label", "global/pg_control"):
        assert not (pgdata / name).exists(), name
    setup.will_not_start(pgdata)
    victim.chmod(0o600)
    setup.restore(pgdata, "--delta")
    setup.check_restored(pgdata)
