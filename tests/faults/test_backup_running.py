"""D8: a backup still being written cannot be deleted, not even while its writer is
stopped (SIGSTOP); a writer killed with kill -9 leaves a backup that the next command
marks failed, that blocks no delete and whose leftovers the next GC removes; and the
commands that write chunk stores refuse to run as root."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.fixtures.backupkit import Faulty, Store, backup, setup, statuses, verify
from tests.fixtures.harbor import PGHARBOR, Harbor
from tests.fixtures.postgres import IS_ROOT, PgCluster

pytestmark = pytest.mark.integration


def test_a_running_backup_is_never_deleted_and_a_dead_one_blocks_nothing(
    harbor: Harbor, pg_cluster: PgCluster
) -> None:
    (t1,) = setup(harbor, pg_cluster, "t1")
    first = backup(harbor)
    writer = Faulty(harbor, "backup.after_index_load=pause", "backup", "create", "c1")
    pid = writer.paused()
    os.kill(pid, signal.SIGSTOP)
    writer.marker.unlink()  # it stays where it is: stopped
    try:
        (running,) = [b for b, status in statuses(harbor).items() if status == "running"]
        line = harbor.fails("backup", "delete", "c1", running, code=7)
        assert "is being written" in line and f"pid {pid}" in line, line
        line = harbor.fails("backup", "delete", "c1", first, code=7)
        assert f"backup lease of backup c1/{running}" in line, line
        assert statuses(harbor) == {first: "ok", running: "running"}
    finally:
        os.kill(pid, signal.SIGCONT)
        os.kill(writer.proc.pid, signal.SIGCONT)  # runuser stops itself with its child
    done = writer.finish()
    assert done.rc == 0 and f"backup {running} of c1: ok" in done.stdout, done
    verify(harbor, first, running)

    writer = Faulty(harbor, "backup.mid_stream=pause", "backup", "create", "c1")
    os.kill(writer.paused(), signal.SIGKILL)
    assert writer.finish().rc in (-signal.SIGKILL, 128 + signal.SIGKILL)
    listed = {b["id"]: b for b in harbor.json("backup", "list", "c1")}
    (dead,) = [b for b in listed.values() if b["id"] not in (first, running)]
    assert dead["status"] == "failed" and "is gone" in dead["error"], dead
    assert any(r.endswith(".running") for r in Store(t1).refs)  # what it left
    harbor.run("backup", "delete", "c1", first)  # not blocked by the dead backup
    Store(t1).consistent()  # its partial chunk map and marker went with that GC
    assert not [p for p in (t1 / "c1" / "backups" / dead["id"]).rglob("*") if p.is_file()]
    harbor.run("backup", "delete", "c1", dead["id"])
    assert statuses(harbor) == {running: "ok"}
    verify(harbor, running)


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
@pytest.mark.parametrize(
    "command", [["create", "c1"], ["delete", "c1", "x"], ["verify", "c1", "x"]]
)
def test_writing_a_chunk_store_as_root_is_refused(
    harbor: Harbor, workdir: Path, command: list[str]
) -> None:
    import subprocess

    proc = subprocess.run(
        [PGHARBOR, "--catalog", harbor.catalog, "backup", *command],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "must not run as root" in line and "runuser -u postgres -- pgharbor" in line
    assert not (workdir / "targets").exists()
