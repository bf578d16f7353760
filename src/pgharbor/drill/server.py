"""The scratch server of a drill: started from the restored data directory with the
binaries of the cluster's major version, as the drill's own (unprivileged) OS user, on a
free port bound to 127.0.0.1 only, its Unix socket in the scratch folder, with an
hba file of its own (the socket only, trust: the folder is 0700), nothing archived and no
connection to any primary; stopped with ``pg_ctl stop``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from pgharbor.errors import PostgresError

HBA = "local all all trust\nhost all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class ScratchServer:
    def __init__(self, bindir: Path, pgdata: Path, scratch: Path, user: str) -> None:
        self.bindir, self.pgdata, self.scratch, self.user = bindir, pgdata, scratch, user
        self.port = free_port()
        self.sock = scratch / "sock"
        self.log = scratch / "server.log"
        self.hba = scratch / "pg_hba.conf"

    def settings(self) -> dict[str, str]:
        """What overrides the restored configuration (on the command line, so it wins
        over postgresql.conf and postgresql.auto.conf)."""
        return {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.sock),
            "hba_file": str(self.hba),
            "archive_mode": "off",
            "primary_conninfo": "",
            "primary_slot_name": "",
            "hot_standby": "off",  # no connection before the promotion, no parameter check
            "logging_collector": "off",
            "log_destination": "stderr",
            "shared_buffers": "128MB",
            "huge_pages": "off",
            "ssl": "off",
        }

    def start(self) -> None:
        self.sock.mkdir(mode=0o700, exist_ok=True)
        self.hba.write_text(HBA)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        opts = " ".join(f"-c {k}={_quote(v)}" for k, v in self.settings().items())
        args = [str(self.bindir / "pg_ctl"), "start", "-D", str(self.pgdata), "-W"]
        args += ["-l", str(self.log), "-o", opts]
        proc = subprocess.run(args, capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise PostgresError(f"the drill server did not start: {self.log_tail()}")

    def running(self) -> bool:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return False
        if not first.isdigit():
            return True  # being written
        try:
            os.kill(int(first), 0)
        except ProcessLookupError:
            return False
        return True

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no server log)"
        important = [x for x in text if "FATAL" in x or "PANIC" in x]
        return " / ".join((important or text)[-lines:])

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.sock),
            port=self.port,
            user=self.user,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def wait_promoted(self, timeout: float) -> None:
        """Until recovery reached its target and the server was promoted; the server
        exiting (recovery failed) or the timeout: PostgresError with the log's words."""
        deadline = time.monotonic() + timeout
        time.sleep(0.2)
        while time.monotonic() < deadline:
            if not self.running():
                time.sleep(0.3)
                if not self.running():
                    raise PostgresError(f"recovery failed: {self.log_tail()}")
            try:
                if not self.sql("SELECT pg_is_in_recovery()")[0][0]:
                    return
            except psycopg.Error:
                pass
            time.sleep(0.3)
        raise PostgresError(f"recovery did not finish within {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.running():
            args = [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast"]
            subprocess.run(args, capture_output=True, timeout=120, check=False)
        self._stop_prefetcher()

    def _stop_prefetcher(self) -> None:
        """The WAL prefetcher restore_command started lives on until idle: end it (its
        lock file holds its pid) before the scratch folder is removed."""
        from pgharbor.archive.daemon import lock_held
        from pgharbor.archive.prefetch import Cache

        lock = Cache(str(self.pgdata)).lock
        if not os.path.exists(lock) or not lock_held(lock):
            return
        try:
            pid = int(Path(lock).read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and lock_held(lock):
            time.sleep(0.1)

    def reached(self) -> tuple[int, str] | None:
        """Where recovery ended: the switch point the promotion wrote into the new
        timeline's history file (parent timeline, LSN), or None without one."""
        histories = sorted((self.pgdata / "pg_wal").glob("*.history"))
        if not histories:
            return None
        for line in reversed(histories[-1].read_text().splitlines()):
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                return int(parts[0]), parts[1]
        return None
