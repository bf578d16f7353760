"""The shells of the async archive_command and of the restore_command wait for the
resident helper that is working on their file, instead of starting pgharbor beside it;
and start pgharbor at once when no helper is on it. Run with /bin/sh as PostgreSQL runs
them, in a data directory; "pgharbor" here is a stand-in that records that it ran."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from pgharbor.archive.prefetch import INFLIGHT, fast_restore_command
from pgharbor.archive.spool import RUNNING, async_archive_command

SEG = "000000010000000000000007"


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    d = tmp_path / "pgdata"
    for sub in ("pg_wal/pgharbor-spool/done", "pg_wal/pgharbor-spool/failed",
                "pg_wal/pgharbor-prefetch"):  # fmt: skip
        (d / sub).mkdir(parents=True)
    (d / "PG_VERSION").write_text("15\n")
    (d / "recovery.signal").touch()
    return d


def _stand_in(tmp_path: Path, status: int) -> str:
    """A 'pgharbor' that leaves a mark and exits with ``status``."""
    exe = tmp_path / "stand-in"
    exe.write_text(f"#!/bin/sh\ntouch {tmp_path}/ran\nexit {status}\n")
    exe.chmod(0o755)
    return str(exe)


def _run(command: str, cwd: Path, later: Path | None = None) -> int:
    """Run ``command`` as PostgreSQL does; ``later``: a file that appears meanwhile."""
    if later is not None:

        def appear() -> None:
            time.sleep(0.2)
            tmp = later.with_name(f".{later.name}.tmp")  # in place at once, as helpers do
            tmp.write_bytes(b"x" * 100)
            tmp.rename(later)

        threading.Thread(target=appear, daemon=True).start()
    return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, check=False).returncode


def test_async_archive_command_waits_for_the_running_pusher(pgdata: Path, tmp_path: Path) -> None:
    spool = pgdata / "pg_wal" / "pgharbor-spool"
    cmd = async_archive_command(_stand_in(tmp_path, 1), "c1")
    cmd = cmd.replace("%f", SEG).replace("%p", f"pg_wal/{SEG}")
    (spool / RUNNING).write_text("1")
    assert _run(cmd, pgdata, later=spool / "done" / SEG) == 0
    assert not (spool / "done" / SEG).exists()  # consumed
    assert not (tmp_path / "ran").exists()  # no pgharbor started
    # the pusher's attempt failed: pgharbor is asked at once (and reports it)
    (spool / "failed" / SEG).write_text("boom")
    assert _run(cmd, pgdata) == 1 and (tmp_path / "ran").exists()
    # no pusher running: pgharbor at once too
    (tmp_path / "ran").unlink()
    (spool / "failed" / SEG).unlink()
    (spool / RUNNING).unlink()
    assert _run(cmd, pgdata) == 1 and (tmp_path / "ran").exists()


def test_restore_command_waits_for_a_segment_being_prefetched(pgdata: Path, tmp_path: Path) -> None:
    cache = pgdata / "pg_wal" / "pgharbor-prefetch"
    cmd = fast_restore_command(_stand_in(tmp_path, 99), "c1")
    cmd = cmd.replace("%f", SEG).replace("%p", "pg_wal/RECOVERYXLOG")
    (cache / f"{INFLIGHT}{SEG}").touch()
    assert _run(cmd, pgdata, later=cache / SEG) == 0
    assert (pgdata / "pg_wal" / "RECOVERYXLOG").read_bytes() == b"x" * 100
    assert not (cache / SEG).exists()
    assert not (tmp_path / "ran").exists()
    # not being read: pgharbor at once ("not in the archive" is PostgreSQL's 1)
    (cache / f"{INFLIGHT}{SEG}").unlink()
    assert _run(cmd, pgdata) == 1 and (tmp_path / "ran").exists()
