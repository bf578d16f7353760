"""A PostgreSQL 15 server of the benchmark, driven through its own programs (initdb,
pg_ctl, psql, pgbench), with settings in ``postgresql.auto.conf``."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from common import BenchError, run

BINDIR = Path(os.environ.get("PGHARBOR_PG_BINDIR", "/usr/lib/postgresql/15/bin"))

#: The primary: durable (fsync on), asynchronous commit so pgbench writes WAL fast, a
#: checkpoint a minute (full-page images, as on a busy server), no autovacuum.
PRIMARY_SETTINGS: dict[str, str | int] = {
    "listen_addresses": "",
    "shared_buffers": "512MB",
    "max_connections": 50,
    "wal_level": "replica",
    "max_wal_senders": 8,
    "synchronous_commit": "off",
    "max_wal_size": "2GB",
    "min_wal_size": "256MB",
    "checkpoint_timeout": "1min",
    "archive_mode": "on",
    "archive_timeout": 0,
    "logging_collector": "off",
    "log_checkpoints": "off",
    "jit": "off",
    # no WAL but the benchmark's own: autovacuum of the big pgbench tables after a load
    # would write segments at random moments, into the next measurement
    "autovacuum": "off",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


class Server:
    """A cluster in ``pgdata``; its socket folder and log live in ``base``."""

    def __init__(self, pgdata: Path, base: Path, port: int | None = None) -> None:
        self.pgdata, self.base = pgdata, base
        self.port = port or free_port()
        self.sockdir = base / "sock"
        self.logfile = base / f"{pgdata.name}.log"
        self.env: dict[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    @property
    def dsn(self) -> str:
        return f"host={self.sockdir} port={self.port} user=postgres dbname=postgres"

    def bin(self, name: str) -> str:
        return str(BINDIR / name)

    def initdb(self) -> None:
        run(
            [
                self.bin("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            env=self.env,
        )

    def configure(self, settings: Mapping[str, str | int]) -> None:
        """Append settings to postgresql.auto.conf (the last line of a name wins)."""
        with open(self.pgdata / "postgresql.auto.conf", "a") as f:
            for key, value in settings.items():
                f.write(f"{key} = {conf_value(value)}\n")

    def own_settings(self) -> None:
        """Port, socket folder and log of this copy (a restored copy has the primary's)."""
        self.sockdir.mkdir(parents=True, exist_ok=True)
        self.configure({"port": self.port, "unix_socket_directories": str(self.sockdir)})

    def start(self, wait: bool = True) -> None:
        args = [self.bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.logfile)]
        run([*args, *(["-w", "-t", "600"] if wait else ["-W"]), "start"], env=self.env)

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            run(
                [self.bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "600", "stop"],
                env=self.env,
                check=False,
            )

    def reload(self) -> None:
        run([self.bin("pg_ctl"), "-D", str(self.pgdata), "reload"], env=self.env)
        time.sleep(0.5)

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def sql(self, query: str, db: str = "postgres") -> str:
        """Run SQL with psql; unaligned output without headers, stripped."""
        dsn = self.dsn.replace("dbname=postgres", f"dbname={db}")
        args = [self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn]
        return run([*args, "-c", query], env=self.env).strip()

    def pgbench_argv(self, *args: str, db: str = "postgres") -> list[str]:
        conn = ["-h", str(self.sockdir), "-p", str(self.port), "-U", "postgres"]
        return [self.bin("pgbench"), *conn, *args, db]

    def pgbench(self, *args: str, db: str = "postgres") -> str:
        return run(self.pgbench_argv(*args, db=db), env=self.env, timeout=7200)

    def switch_wal(self) -> str:
        """Close the current segment (writing a record first so there is one to close)."""
        self.sql("SELECT pg_logical_emit_message(false, 'bench', 'switch')")
        return self.sql("SELECT pg_walfile_name(pg_switch_wal())")

    def ready_count(self) -> int:
        """The archive backlog: segments PostgreSQL marked ``.ready`` and not yet ``.done``."""
        status = self.pgdata / "pg_wal" / "archive_status"
        return sum(1 for n in os.listdir(status) if n.endswith(".ready"))

    def archived_count(self) -> int:
        return int(self.sql("SELECT archived_count FROM pg_stat_archiver"))

    def wait_archived(self, timeout: float = 1800) -> None:
        """Wait until the backlog is empty (every closed segment archived)."""
        deadline = time.monotonic() + timeout
        while self.ready_count():
            if time.monotonic() > deadline:
                failed = self.sql("SELECT failed_count, last_failed_wal FROM pg_stat_archiver")
                raise BenchError(
                    f"archiving did not catch up in {timeout:.0f} s ({failed})\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def set_archive_command(self, command: str) -> None:
        """Make every later segment go to ``command`` (the backlog is empty first)."""
        self.wait_archived()
        self.configure({"archive_command": command})
        self.reload()
        shown = self.sql("SHOW archive_command")
        if shown != command:
            raise BenchError(f"archive_command did not change: {shown!r}")

    def wait_recovered(self, timeout: float = 3600) -> float:
        """After a non-waiting start of a restored copy: seconds until it has replayed the
        archive and accepts read-write connections (found in its log, no polling queries)."""
        began = time.monotonic()
        done = "database system is ready to accept connections"
        while True:
            text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            if any(line.endswith(done) for line in text.splitlines()):
                return time.monotonic() - began
            if time.monotonic() - began > 3 and not self.running():
                raise BenchError(f"restored server exited during recovery\n{self.log_tail()}")
            if time.monotonic() - began > timeout:
                raise BenchError(f"recovery did not finish in {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.05)

    def restored_segments(self) -> int:
        """How many WAL segments the restore_command delivered (PostgreSQL logs each)."""
        text = self.logfile.read_text(errors="replace")
        return sum(
            1
            for line in text.splitlines()
            if "restored log file" in line and ".history" not in line
        )

    def log_tail(self, n: int = 30) -> str:
        if not self.logfile.exists():
            return "(no server log)"
        lines = self.logfile.read_text(errors="replace").splitlines()[-n:]
        return f"--- {self.logfile} ---\n" + "\n".join(lines)

    def database_bytes(self) -> int:
        return int(self.sql("SELECT sum(pg_database_size(datname)) FROM pg_database"))
