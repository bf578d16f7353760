"""pgharbor demo: the main job in one command, on the embedded defaults.

Creates a throwaway PostgreSQL cluster and a SQLite catalog in a temporary folder,
registers the cluster with two file targets, archives WAL under a pgbench load, checks
every archived file comes back byte-identical, takes a backup, writes more, restores to
a moment in the past, starts the restored copy and shows its data is exactly what
existed at that moment. Runs every step through the real `pgharbor` command line,
printing each one. Cleans up at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pgharbor.errors import PgharborError
from pgharbor.pg.local import LocalCluster, find_bindir, run_tool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, root: Path, keep: bool) -> None:
        self.root, self.keep = root, keep
        self.exe = shutil.which("pgharbor") or str(Path(sys.executable).with_name("pgharbor"))
        self.catalog = f"sqlite:///{root}/catalog.db"
        self.env = {
            **os.environ,
            "PGHARBOR_CATALOG": self.catalog,
            "PGHARBOR_STATE_DIR": str(root / "state"),
        }
        self.pg = LocalCluster(root / "pgdata", _free_port(), root)
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def ph(self, *args: str, show: bool = True) -> str:
        cmd = [self.exe, *args]
        self.say("$ pgharbor " + " ".join(shlex.quote(a) for a in args))
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=False)
        out = proc.stdout + proc.stderr
        if show and out.strip():
            print("    " + out.rstrip().replace("\n", "\n    "), flush=True)
        if proc.returncode != 0:
            raise PgharborError(
                f"demo step failed: pgharbor {' '.join(args)}: exit {proc.returncode}"
            )
        return proc.stdout

    def run(self) -> None:
        self.say(f"working folder {self.root}")
        self.say("creating a throwaway PostgreSQL cluster")
        self.pg.initdb()
        self.pg.base_conf()
        self.pg.set_conf(archive_mode=True, archive_timeout="60s")
        self.pg.start()
        for name in ("t1", "t2"):
            (self.root / name).mkdir()
        self.ph("init")
        self.ph("target", "add", "primary-disk", f"file://{self.root}/t1")
        self.ph("target", "add", "second-disk", f"file://{self.root}/t2")
        out = self.ph("cluster", "add", "demo", "--dsn", self.pg.dsn, "--idc", "local")
        archive_command = next(
            line.strip().split(" = ", 1)[1].strip("'")
            for line in out.splitlines()
            if line.strip().startswith("archive_command")
        )
        self.ph("placement", "add", "demo", "primary-disk", "--priority", "1")
        self.ph("placement", "add", "demo", "second-disk", "--priority", "2")
        self.say("turning archiving on: archive_command = " + archive_command)
        self.pg.set_conf(archive_command=archive_command)
        self.pg.reload()
        self.say("pgbench: initialising (scale 5) and running 10 s of load")
        pgbench = str(self.pg.bindir / "pgbench")
        conn = ["-h", str(self.root), "-p", str(self.pg.port), "-U", "postgres", "postgres"]
        run_tool([pgbench, "-i", "-s", "5", "-q", *conn])
        run_tool([pgbench, "-T", "10", "-c", "2", "-n", *conn])
        last = self.pg.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        self.say(f"switched WAL; waiting until {last} is archived")
        self.wait_archived(last)
        archiver = self.pg.sql("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]
        self.say(f"pg_stat_archiver: {archiver[0]} archived, {archiver[1]} failed")
        self.verify()
        self.backup_and_restore()
        self.say("demo complete")

    def backup_and_restore(self) -> None:
        self.ph("backup", "create", "demo")
        self.ph("backup", "list", "demo")
        self.pg.sql("CREATE TABLE demo_events (id int, note text)")
        self.pg.sql("INSERT INTO demo_events SELECT g, 'before' FROM generate_series(1, 1000) g")
        moment = self.pg.sql("SELECT clock_timestamp()")[0][0]
        self.say(f"1000 rows in demo_events; remembering the moment {moment.isoformat(' ')}")
        time.sleep(1.0)
        self.pg.sql("INSERT INTO demo_events SELECT g, 'after' FROM generate_series(1001, 1500) g")
        self.pg.sql("DELETE FROM demo_events WHERE id <= 100")
        self.say("then 500 more rows and 100 deleted: 1400 rows now")
        last = self.pg.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        self.wait_archived(last)
        restored = LocalCluster(self.root / "restored", _free_port(), self.root)
        self.ph(
            "restore",
            "demo",
            "--pgdata",
            str(restored.pgdata),
            "--target-time",
            moment.isoformat(" "),
        )
        restored.set_conf(port=restored.port, archive_mode=False)
        self.say("starting the restored copy; it replays WAL from the archive to that moment")
        restored.start()
        try:
            restored.wait_ready()
            count = restored.sql("SELECT count(*) FROM demo_events")[0][0]
            rows = self.pg.sql("SELECT count(*) FROM demo_events")[0][0]
            self.say(f"restored copy: {count} rows in demo_events (the primary has {rows} now)")
            if count != 1000:
                raise PgharborError(f"restored copy has {count} rows, expected 1000")
            self.say("the restored copy holds exactly what existed at that moment")
        finally:
            restored.stop("immediate")

    def wait_archived(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.pg.sql("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")[0]
            if row[0] and row[0] >= name:
                return
            time.sleep(0.3)
        raise PgharborError(
            f"{name} was not archived within {timeout:.0f} s (see {self.pg.logfile})"
        )

    def verify(self) -> None:
        import json

        files = json.loads(self.ph("wal", "list", "demo", "--json", show=False))
        bad = [f["name"] for f in files if f["missing"]]
        if bad:
            raise PgharborError(f"files missing copies: {bad}")
        self.say(f"catalog: {len(files)} files, each on both targets; fetching them all back")
        import hashlib

        for f in files:
            dest = self.root / "fetched"
            subprocess.run(
                [self.exe, "wal", "fetch", "demo", f["name"], str(dest)], env=self.env, check=True
            )
            digest = "sha256:" + hashlib.sha256(dest.read_bytes()).hexdigest()
            if digest != f["checksum"]:
                raise PgharborError(f"{f['name']}: fetched copy differs from the archived checksum")
        self.say(f"fetched {len(files)} files; all checksums match")

    def cleanup(self) -> None:
        try:
            self.pg.stop("immediate")
        except PgharborError as exc:
            print(f"pgharbor: warning: {exc}", file=sys.stderr)
        if self.keep:
            self.say(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def run_demo(keep: bool = False) -> None:
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run the whole demo as the postgres OS user.
        find_bindir()
        exe = shutil.which("pgharbor") or str(Path(sys.executable).with_name("pgharbor"))
        args = ["runuser", "-u", "postgres", "--", exe, "demo", *(["--keep"] if keep else [])]
        rc = subprocess.run(args, check=False).returncode
        if rc != 0:
            raise PgharborError(f"demo failed (exit {rc})")
        return
    root = Path(tempfile.mkdtemp(prefix="pgharbor-demo-"))
    demo = Demo(root, keep)
    try:
        demo.run()
    finally:
        demo.cleanup()
