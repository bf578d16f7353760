"""A PostgreSQL server on this host, driven through its own tools (initdb, pg_ctl).

Used by the demo and by restore to start a throwaway or restored server. Runs the tools
as the current OS user: callers that start as root re-run themselves as postgres.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from pgharbor.errors import PostgresError


def find_bindir(major: int | None = None) -> Path:
    """PostgreSQL's binaries: $PGHARBOR_PG_BIN, else the newest (or given) Debian major."""
    env = os.environ.get("PGHARBOR_PG_BIN")
    if env:
        return Path(env)
    base = Path("/usr/lib/postgresql")
    majors = sorted((int(p.name) for p in base.glob("*") if p.name.isdigit()), reverse=True)
    if major is not None:
        majors = [m for m in majors if m == major]
    for m in majors:
        if (base / str(m) / "bin" / "pg_ctl").exists():
            return base / str(m) / "bin"
    raise PostgresError(
        f"PostgreSQL {major or ''} binaries not found under {base}".replace("  ", " "),
        hint="apt-get install postgresql-15, or set PGHARBOR_PG_BIN",
    )


def run_tool(args: list[str], *, input: bytes | None = None, timeout: float = 600) -> str:
    try:
        proc = subprocess.run(args, input=input, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise PostgresError(f"{args[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise PostgresError(f"{Path(args[0]).name} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise PostgresError(f"{Path(args[0]).name} failed: {err[-1] if err else proc.returncode}")
    return proc.stdout.decode(errors="replace")


class LocalCluster:
    def __init__(
        self, pgdata: Path, port: int, socket_dir: Path, bindir: Path | None = None
    ) -> None:
        self.pgdata, self.port, self.socket_dir = pgdata, port, socket_dir
        self.bindir = bindir or find_bindir()
        self.logfile = pgdata.parent / f"{pgdata.name}.log"

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname=postgres"

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def initdb(self) -> None:
        run_tool(
            [
                self.tool("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )

    def set_conf(self, **settings: Any) -> None:
        """Append settings to postgresql.auto.conf (last one wins)."""
        with open(self.pgdata / "postgresql.auto.conf", "a") as f:
            for k, v in settings.items():
                if isinstance(v, bool):
                    v = "on" if v else "off"
                text = str(v).replace("'", "''")
                f.write(f"{k} = '{text}'\n")

    def base_conf(self) -> None:
        self.set_conf(
            port=self.port,
            unix_socket_directories=str(self.socket_dir),
            listen_addresses="",
            fsync=False,
            max_wal_senders=4,
            wal_level="replica",
            shared_buffers="64MB",
            max_wal_size="256MB",
        )

    def start(self, timeout: int = 120) -> None:
        run_tool(
            [
                self.tool("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                str(timeout),
                "start",
            ],
            timeout=timeout + 10,
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            run_tool([self.tool("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"])

    def reload(self) -> None:
        run_tool([self.tool("pg_ctl"), "-D", str(self.pgdata), "reload"])

    def sql(self, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the server accepts connections and has left recovery."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self.sql("SELECT pg_is_in_recovery()")[0][0]:
                    return
            except psycopg.Error:
                pass
            if time.monotonic() > deadline:
                raise PostgresError(f"server on port {self.port} not ready after {timeout:.0f} s")
            time.sleep(0.3)
