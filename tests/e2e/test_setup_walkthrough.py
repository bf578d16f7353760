"""docs/setup.md, step by step, as a new operator runs it: every block marked ``<!-- e2e -->``
in order, in one shell, as the ``postgres`` OS user, with the real ``pgharbor`` on PATH and
a real PostgreSQL 15 (initdb in a temporary folder, loopback and a Unix socket only, free
ports) standing in for the host's cluster. Then the outcomes are checked here, not taken
from the page's output: the catalog rebuilt from the targets holding every file and
backup of the lost one, WAL archived on both targets, a backup ``ok``, the point-in-time
copy holding exactly the rows of the moment, the standby replaying, ``status`` showing
the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.postgres import (
    BINDIR,
    IS_ROOT,
    SERVER_USER,
    PgFactory,
    allocate_port,
    run_as_server_user,
    server_dir,
)
from tests.fixtures.walkthrough import (
    exported_names,
    failed_block,
    parse_blocks,
    run_session,
    session_script,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]

PAGE = Path(__file__).resolve().parents[2] / "docs" / "setup.md"
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def host(pg_factory: PgFactory, workdir: Path) -> Iterator[dict[str, str]]:
    """What root's blocks of the page leave behind (folders owned by postgres), a running
    cluster with the configuration in its data directory, and the values of every
    variable of the page's env block. Copies the page starts are stopped afterwards."""
    primary = pg_factory("main")
    home = server_dir(workdir / "pgharbor", 0o700)
    copies = server_dir(workdir / "copies")
    env = {
        "PATH": f"{VENV_BIN}:{BINDIR}:{SYSTEM_PATH}",
        "HOME": str(workdir),
        "LC_ALL": "C",
        "PGHARBOR_HOME": str(home),
        "PGHARBOR_CATALOG": f"sqlite:///{home}/catalog.db",
        "PGHARBOR_STATE_DIR": str(home / "state"),
        "ARCHIVE": str(server_dir(workdir / "archive")),
        "PGDATA": str(primary.pgdata),
        "PGHOST": str(primary.socket_dir),
        "PGPORT": str(primary.port),
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
        "COPIES": str(copies),
        "PITR_PORT": str(allocate_port()),
        "STANDBY_PORT": str(allocate_port()),
    }
    try:
        yield env
    finally:
        for name in ("standby", "pitr"):
            if (copies / name / "postmaster.pid").exists():
                stop = [BINDIR / "pg_ctl", "stop", "-D", copies / name, "-m", "immediate"]
                run_as_server_user(stop)


def pgharbor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(VENV_BIN / "pgharbor"), *args]
    if IS_ROOT:
        cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        cmd, env={**keep, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def connect(env: dict[str, str], port: str) -> psycopg.Connection[tuple[object, ...]]:
    conninfo = f"host={env['PGHOST']} port={port} user=postgres dbname=postgres"
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


def one(env: dict[str, str], port: str, query: str) -> object:
    with connect(env, port) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_the_page_marks_its_steps() -> None:
    blocks = parse_blocks(PAGE.read_text())
    assert [b.kind for b in blocks].count("env") == 1
    assert len([b for b in blocks if b.kind == "run"]) >= 8
    lost = PAGE.read_text().split("## When the catalog is lost", 1)[1].split("\n## ", 1)[0]
    assert "<!-- e2e -->" in lost and "catalog rebuild" in lost


def test_setup_walkthrough(host: dict[str, str], workdir: Path, pg_factory: PgFactory) -> None:
    blocks = parse_blocks(PAGE.read_text())
    (env_block,) = [b for b in blocks if b.kind == "env"]
    assert sorted(set(exported_names(env_block))) == sorted(set(host) - {"HOME", "LC_ALL"})

    proc = run_session(session_script(blocks, "docs/setup.md"), host, workdir, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, f"stopped in {failed_block(out)}:\n{out[-6000:]}"
    assert "Traceback" not in out, out

    # the catalog in use from here on is the one rebuilt from the targets: it holds every
    # file and backup the lost one held, and the checks below run against it
    lost = f"sqlite:///{host['PGHARBOR_HOME']}/catalog.db.lost"
    files = json.loads(pgharbor(host, "wal", "list", "main", "--json").stdout)
    before = json.loads(pgharbor(host, "--catalog", lost, "wal", "list", "main", "--json").stdout)
    assert {f["name"] for f in before} <= {f["name"] for f in files}, (before, files)
    lost_backups = json.loads(
        pgharbor(host, "--catalog", lost, "backup", "list", "main", "--json").stdout
    )
    rebuilt = json.loads(pgharbor(host, "backup", "list", "main", "--json").stdout)
    assert [b["id"] for b in rebuilt] == [b["id"] for b in lost_backups], rebuilt

    # archiving works: every archived file on both targets, none missing
    assert len(files) >= 3, files
    assert all(f["missing"] == [] for f in files), files
    stored = {p.name for p in Path(host["ARCHIVE"], "disk2").rglob("0000000*") if p.is_file()}
    assert {f["name"] for f in files if f["name"].endswith(("1", "2"))} <= stored

    # the first backup is listed and ok
    backups = json.loads(pgharbor(host, "backup", "list", "main", "--json").stdout)
    assert [b["status"] for b in backups] == ["ok"], backups

    # the catalog's copy (VACUUM INTO) is a whole catalog: the same backup in it
    (copy,) = Path(host["PGHARBOR_HOME"], "backup").glob("catalog-*.db")
    listed = json.loads(
        pgharbor(host, "--catalog", f"sqlite:///{copy}", "backup", "list", "main", "--json").stdout
    )
    assert [b["id"] for b in listed] == [b["id"] for b in backups]

    # the point-in-time copy: exactly the 1000 rows of the moment, promoted, not archiving
    pitr = host["PITR_PORT"]
    assert one(host, pitr, "SELECT count(*) FROM orders") == 1000
    assert one(host, pitr, "SELECT count(*) FROM orders WHERE id > 100") == 900
    assert one(host, pitr, "SELECT pg_is_in_recovery()") is False
    assert one(host, pitr, "SHOW archive_mode") == "off"
    assert one(host, host["PGPORT"], "SELECT count(*) FROM orders") == 101

    # the standby: in recovery, and it replays what the primary writes from now on
    standby = host["STANDBY_PORT"]
    assert one(host, standby, "SELECT pg_is_in_recovery()") is True
    with connect(host, host["PGPORT"]) as conn:
        conn.execute("INSERT INTO orders SELECT g, 'later' FROM generate_series(6001, 6050) g")
        lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert lsn is not None
    query = f"SELECT pg_last_wal_replay_lsn() >= '{lsn[0]}'::pg_lsn"
    deadline = time.monotonic() + 60
    while one(host, standby, query) is not True:
        log = Path(host["COPIES"], "standby.log")
        assert time.monotonic() < deadline, (
            f"the standby did not replay {lsn[0]}:\n{log.read_text()}"
        )
        time.sleep(0.2)
    assert one(host, standby, "SELECT count(*) FROM orders") == 151

    # status: exit 0, the cluster on its screen, the backup counted
    status = pgharbor(host, "status", "main")
    assert status.returncode == 0, status.stderr
    assert "main" in status.stdout
    (report,) = json.loads(pgharbor(host, "status", "main", "--json").stdout)
    assert report["cluster"] == "main" and report["placements"] == ["disk1", "disk2"]
    assert report["files"] == len(files) and report["missing_copies"] == 0, report
    assert report["backups"]["usable"] == 1 and report["backups"]["failed"] == 0, report
    (window,) = report["windows"]
    assert window["timeline"] == 1 and window["start_lsn"] is not None, report
