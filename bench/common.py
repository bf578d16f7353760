"""Shared helpers of the benchmark: running and timing programs, logging, statistics.

The whole benchmark runs as the OS user that runs PostgreSQL (``bench/run`` switches to
``postgres`` when started as root), so every program here is started directly, exactly as
PostgreSQL's archiver starts an ``archive_command``: ``/bin/sh -c "…"``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_T0 = time.monotonic()


def say(text: str) -> None:
    """One progress line on stderr, with the seconds since the start."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {text}", file=sys.stderr, flush=True)


BASE_ENV = "PGHARBOR_BENCH_BASE"  # the work folder a root start made for the re-run


def as_postgres(
    script: str, argv: Sequence[str], out: str | os.PathLike[str], prefix: str
) -> int | None:
    """Started as root: re-run ``script`` as ``postgres`` (the server's OS user) in ``/``,
    with ``--out`` made absolute and a work folder it owns (``work_folder``); its exit
    status. None when not root: the caller goes on."""
    if os.geteuid() != 0:
        return None
    base = tempfile.mkdtemp(prefix=prefix)
    shutil.chown(base, "postgres", "postgres")
    result = Path(out).resolve()
    result.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(result.parent, "postgres", "postgres")
    script = os.path.abspath(script)
    cmd = ["runuser", "-u", "postgres", "--", sys.executable, script, *argv, "--out", str(result)]
    return subprocess.call(cmd, cwd="/", env={**os.environ, BASE_ENV: base})


def work_folder(prefix: str) -> Path:
    """The work folder: the one a root start made (``as_postgres``), or a new one."""
    return Path(os.environ.get(BASE_ENV) or tempfile.mkdtemp(prefix=prefix))


class BenchError(RuntimeError):
    """A step of the benchmark failed: the message names the command and its output."""


@dataclass(frozen=True)
class Timed:
    """One finished program: wall seconds, peak RSS (KiB, the largest process of the tree
    it waited for), exit code and output."""

    seconds: float
    maxrss_kib: int
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Size:
    """How big one run is."""

    mode: str
    scale: int  # pgbench scale of the main database (~15.6 MB each)
    segments: int  # WAL segments in the corpus (archive/restore phases)
    load_seconds: int  # pgbench duration of each live-load archiving run
    load_rounds: int  # live-load runs of each way of archiving (taking turns)
    big_gb: float  # cluster size of the second peak-RSS backup of pgharbor (0: skip)
    backlog: int = 200  # .ready segments of the archiver-behind case
    rounds: int = 3  # rounds (the median is reported) of the backlog and replay feed


def run_timed(
    args: Sequence[str] | str,
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Timed:
    """Run a program (a string runs through ``/bin/sh -c``), time it and read its peak RSS
    with ``wait4`` (Linux reports the maximum over the child and its waited-for children)."""
    argv = ["/bin/sh", "-c", args] if isinstance(args, str) else list(args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=dict(env) if env else None)
        deadline = None if timeout is None else began + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if deadline and time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise BenchError(f"timed out after {timeout:.0f} s: {_show(argv)}")
            time.sleep(0.05)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Timed(
            seconds,
            int(usage.ru_maxrss),
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    if check and result.returncode != 0:
        text = (result.stdout + result.stderr).strip()[-3000:]
        raise BenchError(f"exit {result.returncode}: {_show(argv)}\n{text}")
    return result


def run(
    args: Sequence[str] | str,
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = 3600,
) -> str:
    """Run a program and return its stdout (raises :class:`BenchError` on failure)."""
    return run_timed(args, env=env, check=check, timeout=timeout).stdout


def fast_time(command: str, env: Mapping[str, str] | None = None) -> float:
    """Wall seconds of one ``/bin/sh -c command`` (for the per-file loops: little overhead
    of our own); raises on a non-zero exit."""
    began = time.perf_counter()
    proc = subprocess.run(
        ["/bin/sh", "-c", command], env=dict(env) if env else None, capture_output=True
    )
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        text = (proc.stdout + proc.stderr).decode(errors="replace").strip()[-2000:]
        raise BenchError(f"exit {proc.returncode}: {command}\n{text}")
    return seconds


def _show(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def q(value: str | os.PathLike[str]) -> str:
    """Shell-quote a value for a command line."""
    return shlex.quote(os.fspath(value))


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p95, mean, min, max and total of a list of seconds (rendered in ms)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(values),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "min_ms": ordered[0] * 1000,
        "max_ms": ordered[-1] * 1000,
        "total_s": sum(ordered),
    }


def tree_bytes(path: Path, only: set[str] | None = None) -> int:
    """Bytes of the regular files under ``path`` (what a repository holds on disk); with
    ``only``, of the files whose name starts with one of these WAL names."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            if only is not None and name[:24] not in only:
                continue
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


def segment_names(folder: Path) -> list[str]:
    """Sorted names of the WAL segments (24 hex digits) in ``folder``."""
    hexdigits = set("0123456789ABCDEF")
    return sorted(n for n in os.listdir(folder) if len(n) == 24 and set(n) <= hexdigits)
