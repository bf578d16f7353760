"""restore_command fails closed: in archive recovery (recovery.signal) every `wal fetch`
outcome but "no placement has this file" exits 126, so PostgreSQL stops recovery instead
of ending it early; a malformed copy on one placement is a reason to try the next one.

Each failure class is caused for real where it can be (malformed stored headers, a
decompression bomb under an address-space limit, an unreadable config, a prefetch folder
that is not a folder, Ctrl-C during a hanging connection); "a bug anywhere" is a
RuntimeError/MemoryError raised inside the command."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgharbor import envelope
from pgharbor.archive import hotcli
from pgharbor.archive.prefetch import fast_restore_command
from pgharbor.archive.push import push
from pgharbor.cli.main import run as click_run
from pgharbor.entry import main
from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.tamper import rewrite_header
from tests.fixtures.walgen import segment

SEG1 = "000000010000000000000001"
SEG9 = "000000010000000000000009"
PGHARBOR = str(Path(sys.executable).with_name("pgharbor"))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    e = Env(tmp_path)
    e.data = segment(SEG1, SYSID)  # type: ignore[attr-defined]
    push(e.settings, "c1", e.wal(SEG1, e.data))  # type: ignore[attr-defined]
    monkeypatch.setenv("PGHARBOR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PGHARBOR_VERBOSE", raising=False)
    return e


def _datadir(tmp: Path, signal_file: str | None = "recovery.signal") -> Path:
    d = tmp / "pgdata"
    (d / "pg_wal").mkdir(parents=True, exist_ok=True)
    (d / "PG_VERSION").write_text("15\n")
    for f in ("recovery.signal", "standby.signal"):
        (d / f).unlink(missing_ok=True)
    if signal_file:
        (d / signal_file).touch()
    return d


@pytest.fixture
def recovering(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = _datadir(env.tmp)
    monkeypatch.chdir(d)
    yield d


def _fetch(env: Env, name: str = SEG1, *extra: str, pre: tuple[str, ...] = ()) -> int:
    return main([*pre, "--catalog", env.url, "wal", "fetch", *extra, "c1", name, "pg_wal/X"])


def _stored(env: Env, i: int, name: str = SEG1) -> Path:
    return env.roots[i] / "c1" / "wal" / name[:16] / name


BAD_FIELDS = [
    {"size": "abc"},
    {"size": 1.5},
    {"size": 10**30},
    {"size": {}},
    {"size": True},
    {"size": -1},
    {"name": 7},
    {"sha256": ["x"]},
    {"compression": None},
]


@pytest.mark.parametrize(
    "change", BAD_FIELDS, ids=lambda c: f"{next(iter(c))}={c[next(iter(c))]!r}"[:40]
)
def test_malformed_header_on_one_target_falls_back(
    env: Env, recovering: Path, change: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    rewrite_header(_stored(env, 0), **change)
    assert _fetch(env) == 0
    assert (recovering / "pg_wal" / "X").read_bytes() == env.data  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert err.count("pgharbor: warning:") == 1 and "t1:" in err  # degraded, said once


@pytest.mark.parametrize("change", BAD_FIELDS[:4], ids=lambda c: repr(c)[:30])
def test_malformed_everywhere_stops_recovery_but_not_a_standby(
    env: Env, recovering: Path, change: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    for i in (0, 1):
        rewrite_header(_stored(env, i), **change)
    assert _fetch(env) == 126
    assert "stopping recovery rather than ending it early" in capsys.readouterr().err
    assert not (recovering / "pg_wal" / "X").exists()
    _datadir(env.tmp, "standby.signal")  # a standby retries: never 126
    assert _fetch(env) == 10
    _datadir(env.tmp, None)  # not in recovery at all
    assert _fetch(env) == 10


def test_only_not_archived_ends_recovery(env: Env, recovering: Path) -> None:
    assert _fetch(env) == 0
    assert _fetch(env, SEG9) == 1
    assert _fetch(env, SEG9, "--strict") == 99  # for the restore_command's shell wrapper
    away = env.tmp / "t1-away"
    env.roots[0].rename(away)  # t1 is gone (its file system unmounted, mount point removed)
    assert _fetch(env, SEG9) == 126  # "not on t2" is not "not archived" while t1 is away
    env.roots[0].mkdir()  # the bare mount point: answers "not found" to everything
    assert _fetch(env, SEG9) == 126  # but it is not the target: its claim is missing
    env.roots[0].rmdir()
    away.rename(env.roots[0])
    assert _fetch(env, SEG9) == 1


@pytest.mark.parametrize(
    "pre",
    [("-v",), ("--verbose",), ("-v", "--config", "/dev/null"), ("--verbose", "-v")],
    ids=" ".join,
)
def test_any_global_option_takes_the_same_door(
    env: Env, recovering: Path, pre: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    for i in (0, 1):
        _stored(env, i).write_bytes(b"garbage")
    assert _fetch(env, pre=pre) == 126
    assert _fetch(env, SEG9, pre=pre) == 1
    assert "not in the archive" in capsys.readouterr().err  # -v says so


def test_catalog_option_spellings_and_unknown_options(env: Env, recovering: Path) -> None:
    args = ["wal", "fetch", "c1", SEG1, "pg_wal/X"]
    assert main([f"--catalog={env.url}", *args]) == 0
    assert main(["--catalog", env.url, "-q", *args]) == 126  # unknown: a usage error, fail closed
    _datadir(env.tmp, None)
    assert main(["--catalog", env.url, "-q", *args]) == 2
    assert main(["--catalog"]) == 2  # Click's own usage error, not a hot command


def test_unreadable_config_stops_recovery(env: Env, recovering: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("compression_level = [")
    for config in (str(bad), str(tmp_path / "missing.toml"), str(tmp_path)):
        assert _fetch(env, pre=("--config", config)) == 126
    _datadir(env.tmp, None)
    assert _fetch(env, pre=("--config", str(bad))) == 3


@pytest.mark.parametrize("exc", [RuntimeError("a bug"), MemoryError(), KeyError("x")])
def test_a_bug_anywhere_stops_recovery(
    env: Env, recovering: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    def broken(*args: object) -> None:
        raise exc

    monkeypatch.setattr(hotcli, "fetch_with_prefetch", broken)
    assert _fetch(env) == 126
    _datadir(env.tmp, None)
    assert _fetch(env) == 70


def test_click_path_has_the_same_policy(env: Env, recovering: Path) -> None:
    for i in (0, 1):
        _stored(env, i).write_bytes(b"garbage")
    assert click_run(["--catalog", env.url, "wal", "fetch", "c1", SEG1, "pg_wal/X"]) == 126


def test_prefetch_folder_trouble_is_only_a_warning(
    env: Env, recovering: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (recovering / "pg_wal" / "pgharbor-prefetch").write_text("not a folder")
    assert _fetch(env) == 0
    assert (recovering / "pg_wal" / "X").read_bytes() == env.data  # type: ignore[attr-defined]
    assert "warning: prefetch" in capsys.readouterr().err


def _bomb(env: Env) -> None:
    """t1's copy: 131 KB that decompress to 4 GiB, with a header claiming that size."""
    import zstandard

    c = zstandard.ZstdCompressor(level=1)
    chunk = b"\0" * (64 << 20)
    with c.stream_writer(open(env.tmp / "bomb.zst", "wb"), size=4 << 30) as w:
        for _ in range(64):
            w.write(chunk)
    payload = (env.tmp / "bomb.zst").read_bytes()
    meta = envelope.read_meta(_stored(env, 0).read_bytes()).replace(size=4 << 30)
    head = meta.to_json()
    _stored(env, 0).write_bytes(envelope.MAGIC + len(head).to_bytes(4, "little") + head + payload)


def test_decompression_bomb_costs_nothing(env: Env, recovering: Path) -> None:
    """A 131 KB object that inflates to 4 GiB, on the first target: the fetch reads the
    second target's copy, and never holds more than a segment's worth of memory."""
    _bomb(env)
    rewrite_header(_stored(env, 0), size=16 << 20)  # and a size in its header that looks right
    # the peak RSS of a child is inherited from its parent at fork (this test process is
    # large), so a small launcher runs the fetch and reports the fetch's own peak
    launcher = (
        "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE);"
        " _, st, ru = os.wait4(p.pid, 0); sys.stderr.write(p.stderr.read().decode());"
        " print(os.waitstatus_to_exitcode(st), ru.ru_maxrss)"
    )
    fetch = [PGHARBOR, "--catalog", env.url, "wal", "fetch", "c1", SEG1, "pg_wal/X"]
    proc = subprocess.run(
        [sys.executable, "-c", launcher, *fetch],
        capture_output=True,
        text=True,
        cwd=recovering,
        env={**os.environ, "PGHARBOR_STATE_DIR": str(env.tmp / "state")},
        check=True,
    )
    rc, peak_kib = (int(x) for x in proc.stdout.split())
    assert rc == 0, proc.stderr  # t2's copy
    assert "frame claims" in proc.stderr
    assert peak_kib < 300 * 1024, peak_kib  # far below the 4 GiB claimed
    assert (recovering / "pg_wal" / "X").read_bytes() == env.data  # type: ignore[attr-defined]


def test_ctrl_c_stops_recovery(env: Env, recovering: Path) -> None:
    fifo = _stored(env, 0)
    fifo.unlink()
    os.mkfifo(fifo)  # t1's copy: reading it blocks (a hanging mount)
    proc = subprocess.Popen(
        [PGHARBOR, "--catalog", env.url, "wal", "fetch", "c1", SEG1, "pg_wal/X"],
        cwd=recovering,
        env={**os.environ, "PGHARBOR_STATE_DIR": str(env.tmp / "state")},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, blocked = time.monotonic() + 20, 0
    while time.monotonic() < deadline and blocked < 3:  # until it sits in the FIFO's open
        blocked = blocked + 1 if _syscall(proc.pid) == "257" else 0  # openat (x86_64)
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 126, err
    assert "interrupted" in err and "Traceback" not in err


def _syscall(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split(" ", 1)[0]
    except OSError:
        return ""


@pytest.mark.parametrize(
    ("signal_file", "expected"), [("recovery.signal", 126), ("standby.signal", 1), (None, 126)]
)
def test_restore_command_wrapper_fails_closed_before_pgharbor_runs(
    tmp_path: Path, signal_file: str | None, expected: int
) -> None:
    """An installation that fails before any pgharbor code runs (an ImportError exits 1,
    PostgreSQL's "not found"): the generated restore_command still stops recovery."""
    d = _datadir(tmp_path, signal_file)
    broken = f"{shlex.quote(sys.executable)} -c 'import pgharbor_not_installed'"
    cmd = fast_restore_command(broken, "c1").replace("%f", SEG1).replace("%p", "pg_wal/X")
    assert subprocess.run(["sh", "-c", cmd], cwd=d, check=False).returncode == expected


def test_restore_command_wrapper_passes_answers_through(env: Env) -> None:
    d = _datadir(env.tmp)
    prefix = f"PGHARBOR_STATE_DIR={env.tmp / 'state'} {PGHARBOR} --catalog {env.url}"

    def rc(name: str) -> int:
        cmd = fast_restore_command(prefix, "c1").replace("%f", name).replace("%p", "pg_wal/X")
        return subprocess.run(["sh", "-c", cmd], cwd=d, check=False).returncode

    assert rc(SEG1) == 0 and (d / "pg_wal" / "X").read_bytes() == env.data  # type: ignore[attr-defined]
    assert rc(SEG9) == 1  # not archived: PostgreSQL's "not found"
    for i in (0, 1):
        _stored(env, i).write_bytes(b"garbage")
    assert rc(SEG1) == 126


def test_a_starting_prefetcher_trusts_nothing_left_in_its_folder(env: Env, tmp_path: Path) -> None:
    """Files left in pg_wal/pgharbor-prefetch (a host crash, an earlier prefetcher) are
    removed before the restore_command's shell could hand one over."""
    from pgharbor.archive.daemon import lock_held
    from pgharbor.archive.prefetch import Cache

    d = _datadir(env.tmp)
    cache = Cache(str(d))
    os.makedirs(cache.root)
    Path(cache.wanted).write_text(SEG1)  # replay is at SEG1: the window starts at SEG2
    stale = Path(cache.root) / "000000010000000000000002"  # in the window, but not trusted
    stale.write_bytes(b"left by a crash")
    config = tmp_path / "prefetch.toml"
    config.write_text(f'catalog = "{env.url}"\nprefetch_idle_exit = 5\n')
    proc = subprocess.Popen(
        [PGHARBOR, "--config", str(config), "wal", "prefetcher", "c1", str(d)],
        cwd=d,
        env={**os.environ, "PGHARBOR_STATE_DIR": str(env.tmp / "state")},
    )
    try:
        deadline = time.monotonic() + 20
        while not lock_held(cache.lock) and time.monotonic() < deadline:
            time.sleep(0.02)
        while stale.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not stale.exists() and proc.poll() is None  # gone while it runs
    finally:
        proc.wait(timeout=30)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_prefetched_files_are_durable_before_they_appear(tmp_path: Path) -> None:
    """A prefetched segment is fsynced before its rename and its folder after it (seen
    with strace): after a host crash it is whole or absent, never torn."""
    trace = tmp_path / "trace"
    code = (
        "from pgharbor.archive.fetch import write_atomic; "
        f"write_atomic({str(tmp_path / 'seg')!r}, b'x' * 65536, durable=True)"
    )
    strace = ["strace", "-f", "-y", "-e", "trace=fsync,rename", "-o", str(trace)]
    subprocess.run([*strace, sys.executable, "-c", code], check=True)
    calls = [
        line for line in trace.read_text().splitlines() if "fsync(" in line or "rename(" in line
    ]
    order = [
        "rename" if "rename(" in c else "dir" if f"<{tmp_path}>" in c else "file" for c in calls
    ]
    assert order == ["file", "rename", "dir"], calls
