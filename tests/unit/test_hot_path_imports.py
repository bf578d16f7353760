"""wal push and wal fetch run as a new process per WAL segment, so what they import is
most of what they cost: each run here is a real command in a fresh interpreter, and
the modules it loaded are checked against the heavy ones the hot path must not load
(a later change cannot quietly add one back). No timings: they vary with the machine."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import history, segment

# stdlib modules with a real import cost (pathlib pulls fnmatch and re, dataclasses
# pulls inspect and ast, ...) and the libraries only the full CLI needs
FORBIDDEN = {
    "pathlib",
    "dataclasses",
    "re",
    "enum",
    "typing",
    "json",
    "urllib.parse",
    "logging",
    "subprocess",
    "concurrent.futures",
    "secrets",
    "contextlib",
    "platform",
    "tomllib",
    "zstandard",  # the package's __init__; the hot path loads its C backend alone
    "pgharbor.crypto",  # no encryption key configured
    "cryptography",
    "sqlalchemy",
    "alembic",
    "click",
    "rich",
    "boto3",
    "botocore",
    "paramiko",
    "psycopg",
}

# run pgharbor's console entry point, then report what it loaded (before anything else
# is imported here)
_RUN = """
import sys
from pgharbor.entry import main
code = main(sys.argv[1:])
print(code, " ".join(sorted(sys.modules)))
"""

SEG1 = "000000010000000000000001"
SEG2 = "000000010000000000000002"


def _startup_modules() -> set[str]:
    """What a bare interpreter of this environment loads (site, .pth files): not ours."""
    out = subprocess.run(
        [sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def _pgharbor(env: Env, cwd: Path, *args: str, config: Path | None = None) -> set[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PGHARBOR")}
    child_env["PGHARBOR_STATE_DIR"] = str(env.tmp / "state")
    where = ["--config", str(config)] if config else ["--catalog", env.url]
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, *where, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code, _, modules = proc.stdout.strip().partition(" ")
    assert code == "0", proc.stderr
    return set(modules.split())


def _heavy(loaded: set[str], startup: set[str]) -> list[str]:
    return sorted(
        m
        for m in loaded - startup - {"zstandard.backend_c"}
        if m in FORBIDDEN or any(m.startswith(f + ".") for f in FORBIDDEN)
    )


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@pytest.fixture
def pgdata(env: Env) -> Path:
    """A data directory as restore_command and archive_command see it (their cwd), with
    the prefetch lock held as by a running prefetcher."""
    d = env.tmp / "pgdata"
    (d / "pg_wal" / "pgharbor-prefetch").mkdir(parents=True)
    (d / "PG_VERSION").write_text("15\n")
    return d


def test_push_and_fetch_load_no_heavy_module(env: Env) -> None:
    startup = _startup_modules()
    # the first contact writes the local placement cache (with json): not measured
    _pgharbor(env, env.tmp, "wal", "push", "c1", env.wal(SEG1, segment(SEG1, SYSID)))
    wal = env.wal(SEG2, segment(SEG2, SYSID))
    runs = {
        "push (new)": ("wal", "push", "c1", wal),
        "push (already archived)": ("wal", "push", "c1", wal),
        "push (history file)": ("wal", "push", "c1", env.wal("00000002.history", history())),
        "fetch": ("wal", "fetch", "c1", SEG2, str(env.tmp / "out")),
    }
    for what, args in runs.items():
        heavy = _heavy(_pgharbor(env, env.tmp, *args), startup)
        assert heavy == [], f"{what}: {heavy}"
    assert (env.tmp / "out").read_bytes() == (env.tmp / "pg_wal" / SEG2).read_bytes()

    # with a config file: the standard library's TOML reader, and nothing else heavy
    config = env.tmp / "pgharbor.toml"
    config.write_text(f'catalog = "{env.url}"\ncompression_level = 3  # the default\n')
    loaded = _pgharbor(env, env.tmp, "wal", "push", "c1", wal, config=config)
    tomllib_needs = ("tomllib", "re", "enum", "typing", "contextlib", "string", "datetime")
    assert [m for m in _heavy(loaded, startup) if not m.startswith(tomllib_needs)] == []


def test_prefetched_fetch_and_async_push_load_no_heavy_module(env: Env, pgdata: Path) -> None:
    startup = _startup_modules()
    cache = pgdata / "pg_wal" / "pgharbor-prefetch"
    data = segment(SEG2, SYSID)
    (cache / SEG2).write_bytes(data)
    lock = os.open(cache / "prefetch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "the prefetcher is running"
        dest = pgdata / "pg_wal" / "RECOVERYXLOG"
        loaded = _pgharbor(env, pgdata, "wal", "fetch", "c1", SEG2, str(dest))
    finally:
        os.close(lock)
    assert dest.read_bytes() == data and not (cache / SEG2).exists()
    assert "pgharbor.archive.fetch" not in loaded  # a prefetched segment needs no catalog
    assert _heavy(loaded, startup) == []

    # async archive_command, for a file the resident pusher has archived already
    (pgdata / "pg_wal" / SEG2).write_bytes(data)
    done = pgdata / "pg_wal" / "pgharbor-spool" / "done"
    done.mkdir(parents=True)
    (done / SEG2).write_text("")
    loaded = _pgharbor(env, pgdata, "wal", "push", "--async", "c1", f"pg_wal/{SEG2}")
    assert not (done / SEG2).exists()
    assert _heavy(loaded, startup) == []


def test_hot_modules_import_no_heavy_module() -> None:
    """Importing every hot-path module (whatever a run happens to need) stays lean too."""
    hot = [
        "pgharbor.entry",
        "pgharbor.archive.hotcli",
        "pgharbor.archive.push",
        "pgharbor.archive.fetch",
        "pgharbor.archive.context",
        "pgharbor.archive.prefetch",
        "pgharbor.archive.spool",
        "pgharbor.archive.daemon",
        "pgharbor.envelope",
        "pgharbor.catalog.lite",
        "pgharbor.catalog.urls",
        "pgharbor.storage",
        "pgharbor.storage.file",
        "pgharbor.storage.layout",
    ]
    code = f"import sys\nfor m in {hot!r}: __import__(m)\nprint(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert _heavy(set(out.split()), _startup_modules()) == []
