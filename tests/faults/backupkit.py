"""What the backup and GC fault tests share: a pgharbor command started in the background
with a fault point (kill, or pause until released), and what a target's chunk store holds
(packs, indexes, refs), read straight from its folder."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.harbor import PGHARBOR, Harbor
from tests.fixtures.postgres import IS_ROOT, SERVER_USER, PgCluster, server_dir


@dataclass
class Done:
    rc: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        lines = [x for x in self.stderr.splitlines() if x.startswith("pgharbor: error:")]
        assert len(lines) == 1, self.stderr
        return lines[0]


class Faulty:
    """One pgharbor command run with ``PGHARBOR_FAULT`` set (see pgharbor.faultpoint)."""

    def __init__(self, harbor: Harbor, fault: str, *args: str) -> None:
        self.harbor = harbor
        self.dir = server_dir(harbor.workdir / "faults")
        self.point = fault.partition("=")[0]
        cmd = [PGHARBOR, "--catalog", harbor.catalog, *args]
        if IS_ROOT:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGHARBOR"))}
        env.update(
            PGHARBOR_STATE_DIR=str(harbor.state_dir),
            PGHARBOR_FAULT=fault,
            PGHARBOR_FAULT_DIR=str(self.dir),
            PGHARBOR_FAULT_WAIT="120",
            **harbor.env,
        )
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=harbor.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def marker(self) -> Path:
        return self.dir / f"{self.point}.paused"

    def paused(self, timeout: float = 60) -> int:
        """Wait until the command pauses at its point; its pid (pgharbor's own)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.marker.exists() and (text := self.marker.read_text()).endswith("\n"):
                return int(text)
            if self.proc.poll() is not None:
                err = self.proc.communicate()[1]
                raise AssertionError(f"exited {self.proc.returncode} before {self.point}: {err}")
            time.sleep(0.05)
        raise AssertionError(f"never paused at {self.point}")

    def finish(self, timeout: float = 120) -> Done:
        """Let it go (again at each later pause at the same point) and wait for its end."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self.marker.unlink(missing_ok=True)
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout} s")
            time.sleep(0.05)
        out, err = self.proc.communicate()
        assert "Traceback" not in err, err
        return Done(self.proc.returncode, out, err)


@contextlib.contextmanager
def lease_held(root: Path, kind: str, owner: str) -> Iterator[None]:
    """A lease on the file target at root, held meanwhile by another process of the
    pgharbor user (as a restore or a verification holds one)."""
    code = (
        "import sys\n"
        "from pgharbor.backup.lease import Lease\n"
        "from pgharbor.storage import open_storage\n"
        f"with Lease(open_storage(sys.argv[1]), {kind!r}, {owner!r}):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    cmd = [sys.executable, "-c", code, f"file://{root}"]
    if IS_ROOT:
        cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "held\n"
        yield
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def killed(harbor: Harbor, point: str, *args: str) -> Done:
    """Run a command that SIGKILLs itself at point; assert it did."""
    done = Faulty(harbor, f"{point}=kill", *args).finish()
    assert done.rc in (-signal.SIGKILL, 128 + signal.SIGKILL), (point, done)
    return done


def backup(harbor: Harbor) -> str:
    """A new backup of c1 (ok, or the test fails); its id."""
    out = harbor.run("backup", "create", "c1").stdout
    found = re.search(r"^backup (\S+) of c1: ok,", out, re.M)
    assert found, out
    return found[1]


def statuses(harbor: Harbor) -> dict[str, str]:
    return {b["id"]: b["status"] for b in harbor.json("backup", "list", "c1")}


def ok_backups(harbor: Harbor) -> list[str]:
    return [b for b, status in statuses(harbor).items() if status == "ok"]


def verify(harbor: Harbor, *ids: str) -> int:
    """Every ok backup (or those named) is whole on each of its placements, each read on
    its own (backup verify); how many were checked."""
    for bid in ids or ok_backups(harbor):
        r: dict[str, Any] = harbor.json("backup", "verify", "c1", bid)
        assert r["ok"], r
        assert all(p["status"] == "ok" and p["chunks"] > 0 for p in r["placements"]), r
    return len(ids or ok_backups(harbor))


def change_rows(pg: PgCluster, n: int) -> None:
    """Rewrite a slice of the table (its pages, and new row versions at its end), so a
    new backup shares most chunks with the last and each pack ends up mixed."""
    pg.execute(f"UPDATE t SET v = md5(v) WHERE id BETWEEN {n * 1000 + 1} AND {n * 1000 + 500}")
    pg.execute("CHECKPOINT")


def setup(harbor: Harbor, pg: PgCluster, *targets: str, rows: int = 20000) -> list[Path]:
    roots = [harbor.target(t) for t in targets]
    harbor.register(pg, "c1", *targets)
    harbor.archive_to(pg)
    pg.execute(
        f"CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {rows}) g"
    )
    return roots


class Store:
    """A file target's chunk store, as its folder shows it."""

    def __init__(self, root: Path) -> None:
        self.root = root / "chunks"

    def _names(self, sub: str) -> set[str]:
        folder = self.root / sub
        return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()

    @property
    def packs(self) -> set[str]:
        return self._names("packs")

    @property
    def indexes(self) -> set[str]:
        return self._names("index")

    @property
    def refs(self) -> set[str]:
        return self._names("refs")

    @property
    def leases(self) -> set[str]:
        return self._names("leases")

    def consistent(self) -> None:
        """No orphan pack, no index without its pack, no marker of a running backup."""
        assert self.packs == self.indexes, self.packs ^ self.indexes
        assert not [r for r in self.refs if r.endswith(".running")], self.refs
