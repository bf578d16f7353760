"""Secrets stay secret (issue 8, part 7). Canaries are planted everywhere a user could
put a secret: the catalog password (in a 0600 config file, on --catalog, as a
``?password=`` setting, in a key/value string), a DSN password, an S3 secret key in the
config file's [targets.s3], credentials in target URLs. Then the real CLI runs the whole
job: init, refused target and cluster adds, registration, async archiving by a real
PostgreSQL (so the resident pusher runs), the catalog unreachable, a backup, a restore
whose recovery the prefetcher feeds, --json listings. Every command line seen in /proc
while helpers ran, every file under the test's folder (state dir, data directories,
targets, helper logs, a SQLite catalog), every output, the PostgreSQL catalog's rows and
the S3 objects are scanned: no canary anywhere. File modes: the catalog and the helper
logs 0600, nothing in the state dir readable by others."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, PgFactory, _chown, server_dir
from tests.fixtures.s3server import S3Server, S3Target

pytestmark = pytest.mark.integration

UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1


class Canaries:
    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.catalog = f"CanaryCatalogPw{tag}"  # the catalog password (config file, --catalog)
        self.query = f"CanaryQueryPw{tag}"  # ?password= and key/value catalog forms
        self.dsn = f"CanaryDsnPw{tag}"  # a managed cluster's DSN
        self.s3 = f"CanaryS3Secret{tag}"  # [targets.s3] secret_access_key
        self.url = f"CanaryUrlSecret{tag}"  # credentials in target URLs
        self.all = [self.catalog, self.query, self.dsn, self.s3, self.url]

    def add(self, secret: str) -> None:
        self.all.append(secret)

    def found_in(self, data: bytes | str) -> list[str]:
        raw = data.encode() if isinstance(data, str) else data
        return [c for c in self.all if c.encode() in raw]


class ConfigHarbor(Harbor):
    """Commands get the catalog from a 0600 config file, as an operator who keeps the
    password there runs them; every output is kept for the scan."""

    def __init__(self, workdir: Path, config: Path) -> None:
        super().__init__(workdir, catalog="(the config file's)")
        self.config = config
        self.extra: list[str] = []  # e.g. --catalog for a pass against another catalog
        self.outputs: list[str] = []

    def global_args(self) -> list[str]:
        return ["--config", str(self.config), *self.extra]

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = super().run(*args, check=check, timeout=timeout)
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def write_config(
        self, catalog: str, s3: dict[str, str], path: Path | None = None, extra: str = ""
    ) -> Path:
        path = path or self.config
        lines = [
            f'catalog = "{catalog}"',
            f'state_dir = "{self.state_dir}"',
            "async_idle_exit = 2",
            "prefetch_idle_exit = 2",
            extra,
            "[targets.s3]",
            *(f'{k} = "{v}"' for k, v in s3.items()),
        ]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        _chown(path)
        return path


class ProcWatch:
    """Samples the command line of every process on the machine while it runs: those
    holding a canary, and pgharbor's (to show the helpers ran and were seen)."""

    def __init__(self, canaries: Canaries) -> None:
        self.canaries = canaries
        self.leaks: set[str] = set()
        self.pgharbor: set[str] = set()
        self._stop = threading.Event()

    def _sample(self) -> None:
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            line = raw.replace(b"\0", b" ").decode(errors="replace")
            if self.canaries.found_in(raw):
                self.leaks.add(line)
            if b"pgharbor" in raw:
                self.pgharbor.add(line)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.05)

    @contextmanager
    def running(self) -> Iterator[None]:
        self._stop.clear()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def saw(self, words: str) -> bool:
        return any(words in line for line in self.pgharbor)


def _with_password(url: str, password: str) -> str:
    """``postgresql://postgres@/DB?…`` -> ``postgresql://postgres:PASSWORD@/DB?…``."""
    assert url.startswith("postgresql://postgres@"), url
    return url.replace("postgres@", f"postgres:{password}@", 1)


def _conf_value(output: str, setting: str) -> str:
    """The command of a printed ``setting = '…'`` line, unquoted."""
    m = re.search(rf"^\s*{setting} = '(.*)'$", output, re.MULTILINE)
    assert m, output
    return m[1].replace("''", "'")


def _refusals(h: ConfigHarbor, pg: PgCluster, c: Canaries) -> None:
    """Credentials in target URLs and passwords in DSNs: one line each, nothing stored."""
    for url in (
        f"ssh://archive:{c.url}@127.0.0.1:22/srv",
        f"s3://AKIAEXAMPLE:{c.url}@bucket/prefix",
        f"s3://bucket/prefix?secret_access_key={c.url}",
        f"s3://bucket/prefix?region=x&session_token={c.url}",
        f"file://u:{c.url}@localhost/srv",
    ):
        h.fails("target", "add", "bad", url, code=2)
    for dsn in (
        f"{pg.dsn} password={c.dsn}",
        f"postgresql://postgres:{c.dsn}@127.0.0.1:{pg.port}/postgres",
        f"postgresql://postgres@127.0.0.1:{pg.port}/postgres?password={c.dsn}",
    ):
        line = h.fails("cluster", "add", "bad", "--dsn", dsn, code=2)
        assert "holds a password" in line and ".pgpass" in line, line


def _register(h: ConfigHarbor, pg: PgCluster, bucket: S3Target, c: Canaries) -> str:
    """init, targets, the cluster (async) with its placements; its archive_command."""
    assert "postgres:***@" in h.run("init").stdout
    _refusals(h, pg, c)
    h.target("t1")
    h.run("target", "add", "s3", bucket.url)
    out = h.run("cluster", "add", "c1", "--dsn", pg.dsn, "--async").stdout
    h.run("placement", "add", "c1", "t1", "--priority", "1")
    h.run("placement", "add", "c1", "s3", "--priority", "2")
    command = _conf_value(out, "archive_command")
    assert f"--config {h.config}" in command and "--catalog" not in command, command
    return command


def _archive(h: ConfigHarbor, pg: PgCluster, command: str, keep: Path) -> str:
    """PostgreSQL archives through the printed command (async: the pusher runs) while
    the S3 secret is a canary the server refuses; its own bytes are kept in ``keep``."""
    pg.configure(archive_mode=True, archive_command=f"cp %p {keep}/%f && ({command})")
    pg.restart()
    pg.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 20000) g")
    for _ in range(3):
        last = pg.switch_wal()
    pg.wait_for_archived(last, timeout=120)
    return last


def _error_paths(h: ConfigHarbor, catalog: str, segment: Path, c: Canaries) -> None:
    """Unreachable catalogs (the URL carries a canary), a bad config value, and the
    commands printed for a catalog given on the command line."""
    down = f"postgresql://postgres:{c.catalog}@{UNREACHABLE}/x"
    down_query = f"postgresql://postgres@{UNREACHABLE}/x?password={c.query}"
    h.fails("--catalog", down, "target", "list", code=5)
    h.fails("--catalog", down_query, "cluster", "list", code=5)
    h.fails("--catalog", f"host=127.0.0.1 password={c.query}", "target", "list", code=3)
    # the hot path with the catalog away: the cache carries on, warnings name the catalog
    push = h.run("--catalog", down_query, "wal", "push", "c1", str(segment))
    assert c.found_in(push.stderr) == [], push.stderr
    assert "pgharbor: warning:" in push.stderr and "password=***" in push.stderr, push.stderr
    dest = h.state_dir.parent / "fetched"
    fetch = h.run("--catalog", down, "wal", "fetch", "c1", segment.name, str(dest))
    assert "postgres:***@" in fetch.stderr and dest.read_bytes() == segment.read_bytes()
    # a bad value in a config file that also holds the catalog password
    good, h.config = (
        h.config,
        h.write_config(catalog, {}, h.workdir / "bad.toml", "compression_level = 3.9"),
    )
    h.fails("target", "list", code=3)
    h.config = good
    # --catalog with the password: the printed archive_command leaves it out, and says so
    for mode in ("--sync", "--async"):
        out = h.run("--catalog", catalog, "cluster", "set", "c1", mode)
        assert c.found_in(out.stdout + out.stderr) == [], out
        assert "--catalog" in out.stdout and ".pgpass" in out.stderr, out
    h.fails("cluster", "set", "c1", "--required-copies", "3", code=2)


def _restore(h: ConfigHarbor, pg_factory: PgFactory, c: Canaries) -> PgCluster:
    """A backup, a restore, and its recovery fed by wal fetch and the prefetcher."""
    h.run("backup", "create", "c1", "--target", "t1")
    pgdata = server_dir(h.workdir / "restored") / "data"
    h.run("restore", "c1", "--pgdata", str(pgdata))
    conf = (pgdata / "postgresql.auto.conf").read_text()
    assert c.found_in(conf) == [], conf
    assert f"--config {h.config}" in conf and "--catalog" not in conf, conf
    copy = pg_factory.from_datadir(pgdata, "restored", archive_mode=False)
    copy.start()
    copy.wait_for_recovery_end(timeout=120)
    return copy


def _listings(h: ConfigHarbor) -> None:
    for args in (
        ("target", "list"),
        ("cluster", "list"),
        ("cluster", "show", "c1"),
        ("placement", "list", "c1"),
        ("wal", "list", "c1"),
        ("backup", "list", "c1"),
    ):
        h.run(*args)
        h.json(*args)


def _catalog_rows(url: str) -> str:
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        return "\n".join(
            str(row) for (t,) in tables for row in conn.execute(f'SELECT * FROM "{t}"')
        )


def _leaks_in_files(root: Path, c: Canaries, skip: set[Path]) -> dict[str, list[str]]:
    found = {}
    for path in root.rglob("*"):
        if path in skip or path.is_symlink() or not path.is_file():
            continue
        try:
            hits = c.found_in(path.read_bytes())
        except OSError:
            continue  # a server file removed while the walk ran
        if hits:
            found[str(path)] = hits
    return found


def _check_modes(h: ConfigHarbor, pgdata: Path, sqlite: Path) -> None:
    """The SQLite catalog and the helper logs are 0600; nothing in the state dir is
    reachable by others (a file with group/other bits sits in a 0700 folder)."""
    assert stat.S_IMODE(sqlite.stat().st_mode) == 0o600
    for log in ("pgharbor-spool/pusher.log", "pgharbor-prefetch/prefetch.log"):
        path = pgdata / "pg_wal" / log
        if path.exists():  # the prefetch folder is removed when its helper exits
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    state = list(h.state_dir.rglob("*"))
    assert [p for p in state if p.is_file()], "the state dir holds the cache and journal"
    for path in state:
        if path.is_file():
            private = stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
            assert private or stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0, path


def test_canaries_appear_nowhere(
    workdir: Path,
    pg_factory: PgFactory,
    catalog_pg_url: str,
    s3_server: S3Server,
) -> None:
    c = Canaries()
    assert s3_server.admin is not None
    admin = s3_server.admin.options()
    c.add(admin["secret_access_key"])  # the real secret is as secret as the canary
    catalog = _with_password(catalog_pg_url, c.catalog)  # trust auth: it still connects
    h = ConfigHarbor(workdir, workdir / "pgharbor.toml")
    h.write_config(catalog, admin)
    pg = pg_factory("primary")
    bucket = s3_server.new_bucket()
    watch = ProcWatch(c)

    sqlite = workdir / "lite.db"  # the same refusals against a SQLite catalog
    h.extra = ["--catalog", f"sqlite:///{sqlite}"]
    h.run("init")
    _refusals(h, pg, c)
    h.extra = []
    command = _register(h, pg, bucket, c)
    h.write_config(catalog, {**admin, "secret_access_key": c.s3})  # S3 now refuses us
    keep = server_dir(workdir / "keep")
    with watch.running():
        last = _archive(h, pg, command, keep)
    assert watch.saw("wal pusher c1"), watch.pgharbor
    _error_paths(h, catalog, keep / last, c)
    h.write_config(catalog, admin)
    with watch.running():
        copy = _restore(h, pg_factory, c)
    assert watch.saw("wal prefetcher c1"), watch.pgharbor
    _listings(h)

    assert watch.leaks == set()
    assert [o for o in h.outputs if c.found_in(o)] == []
    configs = {h.config, workdir / "bad.toml"}  # where the operator put the secrets
    assert _leaks_in_files(workdir, c, configs) == {}
    assert c.found_in(_catalog_rows(catalog_pg_url)) == []
    store = bucket.open()
    objects = [store.get(o.key) for o in store.list("")]
    assert objects and [o for o in objects if c.found_in(o)] == []
    _check_modes(h, pg.pgdata, sqlite)
    _check_modes(h, copy.pgdata, sqlite)
