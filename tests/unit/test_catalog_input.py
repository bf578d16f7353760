"""Bad input costs nothing, and listings keep secrets: the real command line on SQLite
catalogs (no servers). A missing catalog is never created by a read, a file that is not
SQLite is one line, a catalog is created 0600, required copies cannot exceed the active
placements, rows stored before credentials were refused are shown redacted, the
commands pgharbor prints for PostgreSQL never carry the catalog password, a resident
helper gets it in its environment (its log 0600), and key generate syncs the folder."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from pgharbor.catalog.repo import Catalog
from tests.fixtures.catalogs import add_test_cluster, init_catalog
from tests.fixtures.harbor import PGHARBOR

CANARY = "CANARY-7f3a9"
READ_COMMANDS = [
    ["target", "list"],
    ["target", "list", "--json"],
    ["cluster", "list"],
    ["cluster", "show", "c1"],
    ["placement", "list", "c1"],
    ["wal", "list", "c1"],
    ["backup", "list", "c1"],
]


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGHARBOR"))}
    env["PGHARBOR_STATE_DIR"] = str(tmp / "state")
    proc = subprocess.run(
        [PGHARBOR, *args], capture_output=True, text=True, env=env, cwd=tmp, umask=0o022
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _fails(tmp: Path, code: int, *args: str) -> str:
    """Run a command that must fail with ``code`` and exactly one line; return it."""
    proc = _cli(tmp, *args)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgharbor: error: "), proc.stderr
    return lines[0]


def test_read_commands_never_create_a_missing_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    for args in READ_COMMANDS:
        line = _fails(tmp_path, 4, "--catalog", f"sqlite:///{path}", *args)
        assert "is not initialised" in line and "run pgharbor init" in line, line
        assert not path.exists(), args
    assert _cli(tmp_path, "--catalog", f"sqlite:///{path}", "init").returncode == 0
    assert sorted(p.name for p in tmp_path.glob("catalog.db*")) == ["catalog.db"]
    assert path.stat().st_mode & 0o777 == 0o600  # created private, whatever the umask


def test_a_file_that_is_not_sqlite_is_one_line_and_stays_untouched(tmp_path: Path) -> None:
    text = tmp_path / "hostname"
    text.write_text("db1.example\n")
    noise = tmp_path / "noise.db"
    noise.write_bytes(bytes(range(256)) * 16)
    for path in (text, noise):
        before = path.read_bytes()
        for args in [["target", "list"], ["wal", "list", "c1"], ["init"]]:
            line = _fails(tmp_path, 4, "--catalog", f"sqlite:///{path}", *args)
            assert f"the catalog sqlite:///{path} is not a SQLite database" in line, line
        assert path.read_bytes() == before


def test_a_key_value_catalog_is_refused_without_echoing_it(tmp_path: Path) -> None:
    line = _fails(tmp_path, 3, "--catalog", f"host=db1 password={CANARY}", "target", "list")
    assert "key/value connection string" in line and CANARY not in line
    assert list(tmp_path.iterdir()) == []  # and no SQLite file named after it


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Catalog, str]:
    """A SQLite catalog with cluster c1 on two file targets and c2 on none."""
    from pgharbor.services import Services, placements
    from pgharbor.settings import load_settings

    url = f"sqlite:///{tmp_path}/catalog.db"
    cat = init_catalog(url)
    add_test_cluster(cat, "c1")
    add_test_cluster(cat, "c2", sysid=7310000000000000002, port=5433)
    settings = load_settings(catalog=url, env={})
    for i in (1, 2):
        (tmp_path / f"t{i}").mkdir()
        cat.add_target(f"t{i}", f"file://{tmp_path}/t{i}")
        placements.add(Services(settings), "c1", f"t{i}", i)
    return cat, url


def test_required_copies_above_the_active_placements_are_refused(
    tmp_path: Path, fleet: tuple[Catalog, str]
) -> None:
    cat, url = fleet
    line = _fails(tmp_path, 2, "--catalog", url, "cluster", "set", "c1", "--required-copies", "3")
    assert "has 2 active placement(s): it cannot require 3 copies" in line, line
    assert cat.cluster("c1").required_copies == 1
    proc = _cli(tmp_path, "--catalog", url, "cluster", "set", "c1", "--required-copies", "2")
    assert proc.returncode == 0 and cat.cluster("c1").required_copies == 2, proc.stderr
    # no placements yet: the default of one copy stays possible, more is refused
    line = _fails(tmp_path, 2, "--catalog", url, "cluster", "set", "c2", "--required-copies", "2")
    assert "has 0 active placement(s): it cannot require 2 copies" in line, line
    proc = _cli(tmp_path, "--catalog", url, "cluster", "set", "c2", "--required-copies", "1")
    assert proc.returncode == 0 and cat.cluster("c2").required_copies == 1, proc.stderr


def test_rows_stored_before_credentials_were_refused_are_shown_redacted(
    tmp_path: Path, fleet: tuple[Catalog, str]
) -> None:
    cat, url = fleet
    # rows an older pgharbor let in: the catalog methods take them as they are
    cat.add_target("old-ssh", f"ssh://archive:{CANARY}@backup.example/srv")
    cat.add_target("old-s3", f"s3://bucket/p?secret_access_key={CANARY}")
    cat.add_placement("c2", "old-ssh", 1)
    add_test_cluster(cat, "c3", sysid=7310000000000000003, port=5434)
    cat.update_cluster("c3", dsn=f"host=db1 user=harbor password={CANARY} dbname=postgres")
    outputs = [
        _cli(tmp_path, "--catalog", url, *args)
        for args in [
            ["target", "list"],
            ["target", "list", "--json"],
            ["cluster", "list", "--json"],
            ["cluster", "show", "c3"],
            ["cluster", "show", "c3", "--json"],
            ["cluster", "show", "c2", "--json"],
            ["placement", "list", "c2"],
            ["placement", "list", "c2", "--json"],
        ]
    ]
    assert all(p.returncode == 0 for p in outputs), [p.stderr for p in outputs]
    assert not [p.stdout for p in outputs if CANARY in p.stdout + p.stderr]
    shown = json.loads(outputs[4].stdout)["dsn"]
    assert shown == "host=db1 user=harbor password=*** dbname=postgres"
    assert "ssh://***@backup.example/srv" in outputs[0].stdout


def test_commands_for_postgresql_never_carry_the_catalog_password(
    tmp_path: Path, fleet: tuple[Catalog, str], caplog: pytest.LogCaptureFixture
) -> None:
    from pgharbor.archive.commands import command_lines
    from pgharbor.errors import ConfigError
    from pgharbor.restore.restore import restore_command_line
    from pgharbor.settings import load_settings

    cat, _ = fleet
    c1 = cat.update_cluster("c1", archive_async=True)
    secret_url = f"postgresql://harbor:{CANARY}@db.example/catalog?password={CANARY}&port=6"
    config = tmp_path / "pgharbor.toml"
    config.write_text(f'catalog = "{secret_url}"\n')
    config.chmod(0o600)

    # the config file supplied the catalog: the command names the file, nothing else
    from_file = load_settings(config=str(config), env={})
    lines = [*command_lines(from_file, c1), restore_command_line(from_file, "c1")]
    assert all(f"--config {config}" in x and "--catalog" not in x for x in lines), lines
    assert not caplog.records

    # --catalog (or PGHARBOR_CATALOG): carried without its password, with a note
    for given in (
        load_settings(catalog=secret_url, env={}),
        load_settings(env={"PGHARBOR_CATALOG": secret_url}),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            lines = [*command_lines(given, c1), restore_command_line(given, "c1")]
        assert not [x for x in lines if CANARY in x], lines
        assert all("--catalog" in x and "harbor@db.example/catalog?port=6" in x for x in lines)
        assert caplog.records and all(".pgpass" in r.getMessage() for r in caplog.records)

    # a password pgharbor cannot take out cleanly: refused rather than written
    odd = load_settings(catalog=f"postgresql://harbor:{CANARY}/x@db.example/catalog", env={})
    with pytest.raises(ConfigError) as info:
        command_lines(odd, c1)
    assert CANARY not in info.value.message


def _process_with(word: str, timeout: float = 20) -> int:
    """The pid of the process whose command line holds ``word`` (waits for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return int(pid)
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no process with {word} in its command line")


def test_a_helper_gets_the_catalog_in_its_environment_not_its_command_line(
    tmp_path: Path,
) -> None:
    """A real helper, started as wal push/fetch start it; it waits on its config file
    (a FIFO) while its command line and environment are read."""
    from pgharbor.archive.daemon import spawn
    from pgharbor.settings import Settings

    config = tmp_path / "pgharbor.toml"
    os.mkfifo(config)
    pgdata, log = tmp_path / "pgdata", tmp_path / "helper.log"
    pgdata.mkdir()
    catalog = f"postgresql://harbor:{CANARY}@db.example/catalog"
    settings = Settings(catalog=catalog, config_file=str(config))
    umask = os.umask(0o022)
    try:
        spawn(settings, "prefetcher", "c1", str(pgdata), str(log))
    finally:
        os.umask(umask)
    pid = _process_with(str(config))
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert CANARY.encode() not in b" ".join(cmdline), cmdline
        assert b"--config" in cmdline and str(config).encode() in cmdline, cmdline
        assert f"PGHARBOR_CATALOG={catalog}".encode() in environ
        assert stat.S_IMODE(log.stat().st_mode) == 0o600  # whatever the umask
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_key_generate_makes_the_new_name_durable(tmp_path: Path) -> None:
    """The key file and its folder are fsynced (seen with strace on the real command)."""
    keys = tmp_path / "keys"
    keys.mkdir()
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-y", "-e", "trace=fsync", "-o", str(trace)]
    proc = subprocess.run(
        [*strace, PGHARBOR, "key", "generate", str(keys / "main.key")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    synced = trace.read_text()
    assert f"<{keys}/main.key>) = 0" in synced, synced  # the file
    assert f"<{keys}>) = 0" in synced, synced  # and the folder that holds its name


def test_the_hot_path_opens_catalogs_with_odd_characters_in_their_path(tmp_path: Path) -> None:
    from pgharbor.catalog import lite
    from pgharbor.catalog.urls import parse_catalog_url
    from tests.fixtures.catalogs import init_catalog

    folder = tmp_path / "odd %41 # ? name"
    folder.mkdir()
    url = f"sqlite:///{folder}/catalog.db"
    init_catalog(url)
    conn = lite.connect(parse_catalog_url(url), 1)
    assert conn.execute("SELECT count(*) FROM clusters").fetchone() == (0,)
    conn.close()


def test_a_standby_restore_never_writes_a_primary_password(harbor: object, workdir: Path) -> None:
    from tests.fixtures.harbor import Harbor

    assert isinstance(harbor, Harbor)
    dest = workdir / "standby"
    for conninfo in (f"host=db1 password={CANARY}", f"postgresql://u:{CANARY}@db1/postgres"):
        line = harbor.fails(
            "restore", "c1", "--pgdata", str(dest), "--standby", "--primary-conninfo", conninfo
        )
        assert "holds a password" in line and ".pgpass" in line and CANARY not in line
    assert not dest.exists()
