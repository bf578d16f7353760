"""wal push and wal fetch run as a new process per WAL segment, so what they import is
a large share of what they cost: each run here is the real console script (what
archive_command and restore_command run) in a fresh interpreter, and the modules it
loaded are checked against the ones the hot path must not load (a later change cannot
quietly add one back). No timings: they vary with the machine; the figures behind the
list are measured by bench/imports.py (docs/benchmarks.md, "The hot path's imports")."""

from __future__ import annotations

import ast
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import history, segment

# What each would add to a wal push: bench/imports.py, the marginal import cost after
# what a push loads (median of 40 fresh interpreters as postgres, 2 shared cores, load
# 1.6-3.6; docs/benchmarks.md), as a share of a whole push of a new segment on that
# machine (70.5 ms; a fetch 57 ms). Forbidden when it is >= ~2%. Allowed, as measured:
# re (3.1 ms) and enum (1.1 ms), which the console script pip writes imports before any
# pgharbor code (0 ms on the hot path); json (1.1 ms, 1.5%, once re is loaded),
# contextlib (0.4 ms, 0.6%), secrets (1.1 ms, 1.6%) and platform (1.3 ms, 1.9%; only
# the zstandard package pulls it in).
FORBIDDEN = {
    "pathlib": "3.9 ms, 5.5%",
    "dataclasses": "11.5 ms, 16% (and ~0.7 ms per frozen class; a Record 0.006 ms)",
    "typing": "3.1 ms, 4.3%",
    "urllib.parse": "2.2 ms, 3.2%",
    "logging": "6.0 ms, 8.5%",
    "subprocess": "3.8 ms, 5.4% (the resident helpers' spawn imports it)",
    "concurrent.futures": "8.5 ms, 12%",
    "tomllib": "7.2 ms, 10% (only with a config file)",
    "zstandard": "the package's __init__ 6.2 ms, 8.8%; its C backend alone 0.5 ms, 0.7%",
    "pgharbor.crypto": "no encryption key configured: not needed",
    "cryptography": "12.8 ms, 18% (with a key only)",
    "sqlalchemy": "179 ms",
    "alembic": "358 ms",
    "click": "23 ms, 32%",
    "rich": "5.3 ms, 7.5%",
    "boto3": "149 ms (an s3 target only)",
    "botocore": "with boto3",
    "paramiko": "143 ms (an ssh target only)",
    "psycopg": "153 ms (a PostgreSQL catalog only)",
}

# The modules that run once per WAL segment: what the runs below load, all of them (a
# sync push, new, again and a history file; fetch, plain, in a data directory and
# prefetched; an async push of a file the pusher has archived). Only these (and
# pgharbor.crypto, loaded per segment when a key is configured) keep the lean dialect:
# TYPE_CHECKING = False, pgharbor.plain's Record, os.path strings, deferred imports.
HOT = {
    "pgharbor",
    "pgharbor.access",
    "pgharbor.archive",
    "pgharbor.archive.context",
    "pgharbor.archive.daemon",
    "pgharbor.archive.early",
    "pgharbor.archive.fetch",
    "pgharbor.archive.hotcli",
    "pgharbor.archive.prefetch",
    "pgharbor.archive.push",
    "pgharbor.archive.spool",
    "pgharbor.catalog",
    "pgharbor.catalog.lite",
    "pgharbor.catalog.urls",
    "pgharbor.domain",
    "pgharbor.domain.wal",
    "pgharbor.entry",
    "pgharbor.envelope",
    "pgharbor.errors",
    "pgharbor.model",
    "pgharbor.plain",
    "pgharbor.settings",
    "pgharbor.settings_check",
    "pgharbor.settings_spec",
    "pgharbor.storage",
    "pgharbor.storage.base",
    "pgharbor.storage.claim",
    "pgharbor.storage.factory",
    "pgharbor.storage.file",
    "pgharbor.storage.layout",
}
LEAN = HOT | {"pgharbor.crypto"}
# What only a run that reads the settings loads: an async push of a file the pusher has
# archived and a prefetched fetch read none (they had loaded the spec and its checks).
SETTINGS = {"pgharbor.settings", "pgharbor.settings_check", "pgharbor.settings_spec"}
SRC = Path(__file__).resolve().parents[2] / "src"

# the console script beside this Python (scripts/setup installs it), run as PostgreSQL
# runs it, then what it loaded (before anything else is imported here)
SCRIPT = Path(sys.executable).with_name("pgharbor")
_RUN = """
import os, sys
def leave(code):  # a hot verb that succeeded leaves through os._exit: see what it loaded
    raise SystemExit(code)
os._exit = leave
script = sys.argv.pop(1)
sys.argv[0] = script
with open(script) as f:
    code = compile(f.read(), script, "exec")
try:
    exec(code, {"__name__": "__main__"})
except SystemExit as exc:
    print(exc.code, " ".join(sorted(sys.modules)))
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
        [sys.executable, "-c", _RUN, str(SCRIPT), *where, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code, _, modules = proc.stdout.strip().partition(" ")
    assert code == "0", proc.stderr
    loaded = set(modules.split())
    ours = {m for m in loaded if m == "pgharbor" or m.startswith("pgharbor.")}
    assert ours <= HOT, f"per-segment modules missing from HOT: {sorted(ours - HOT)}"
    return loaded


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
    tomllib_needs = ("tomllib", "typing", "contextlib", "string", "datetime")
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
    assert loaded & SETTINGS == set()

    # async archive_command, for a file the resident pusher has archived already
    (pgdata / "pg_wal" / SEG2).write_bytes(data)
    done = pgdata / "pg_wal" / "pgharbor-spool" / "done"
    done.mkdir(parents=True)
    (done / SEG2).write_text("")
    loaded = _pgharbor(env, pgdata, "wal", "push", "--async", "c1", f"pg_wal/{SEG2}")
    assert not (done / SEG2).exists()
    assert _heavy(loaded, startup) == []
    assert loaded & SETTINGS == set()


def test_hot_modules_import_no_heavy_module() -> None:
    """Importing every hot-path module (whatever a run happens to need) stays lean too."""
    code = f"import sys\nfor m in {sorted(HOT)!r}: __import__(m)\nprint(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert _heavy(set(out.split()), _startup_modules()) == []


def _lean_dialect(path: Path) -> list[str]:
    """What in a module is the hot path's dialect: ``TYPE_CHECKING = False`` (typing not
    imported) and classes derived from pgharbor.plain's records instead of dataclasses."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TYPE_CHECKING" for t in node.targets
        ):
            found.append(f"line {node.lineno}: TYPE_CHECKING = ...")
        if isinstance(node, ast.ClassDef):
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            if bases & {"Record", "FrozenRecord"}:
                found.append(f"line {node.lineno}: class {node.name}({', '.join(sorted(bases))})")
    return found


def test_lean_dialect_only_on_the_per_segment_path() -> None:
    """Modules that do not run once per segment are written in plain Python (dataclasses,
    typing): the lean dialect pays only where bench/imports.py says it does."""
    offenders = {}
    for path in sorted((SRC / "pgharbor").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module not in LEAN and (found := _lean_dialect(path)):
            offenders[module] = found
    assert offenders == {}
    # and the check sees the dialect where it is
    assert _lean_dialect(SRC / "pgharbor" / "model.py")
