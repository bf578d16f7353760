#!/usr/bin/env python3
"""The per-segment cost of `wal push` (sync archive_command) and `wal fetch`, for checkouts
side by side: the median wall and CPU time of pushing a new segment, of pushing one that
is already archived (PostgreSQL offers a file again after a crash), to two file targets,
and of fetching one back (outside a data directory: no prefetch).

Run as the server's OS user, with a checkout's own venv, for example::

    runuser -u postgres -- REPO/.venv/bin/python bench/hotpath.py REPO [OTHER_REPO ...]

Each checkout gets a fresh SQLite catalog and targets (built with its own code) and 40
segments with valid headers that compress about 4x, as WAL does; the checkouts take
turns segment by segment (A B C, B C A, ...), so a burst of load elsewhere on the machine
hits them alike. Sources must be
byte-compiled (scripts/setup does it): the postgres user cannot write __pycache__.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEGMENTS = 40


def prepare(repo: Path, work: Path, segments: int = SEGMENTS) -> list[str]:
    """A fresh catalog, two file targets and cluster c1 placed on both, built with the
    checkout's own code, and ``segments + 1`` WAL segments in work/pg_wal: their names."""
    code = f"""
import os, sys
sys.path[:0] = [{str(repo)!r}, {str(repo / "src")!r}]
from pathlib import Path
from tests.fixtures.catalogs import SYSID, add_test_cluster, init_catalog
from tests.fixtures.walgen import segment
from pgharbor.settings import load_settings
try:  # the service layer, or the fleet module of checkouts from before it
    from pgharbor.services import Services, placements
    add = lambda s, c, t, p: placements.add(Services(s), c, t, p)
except ImportError:
    from pgharbor.fleet import add_placement
    add = lambda s, c, t, p: add_placement(cat, s, c, t, p)
tmp = Path({str(work)!r})
url = f"sqlite:///{{tmp}}/catalog.db"
cat = init_catalog(url)
for i in (1, 2):
    (tmp / f"t{{i}}").mkdir()
    cat.add_target(f"t{{i}}", f"file://{{tmp}}/t{{i}}")
add_test_cluster(cat)
s = load_settings(catalog=url, env={{"PGHARBOR_STATE_DIR": str(tmp / "state")}})
add(s, "c1", "t1", 1)
add(s, "c1", "t2", 2)
(tmp / "pg_wal").mkdir()
fill = os.urandom(16384) + bytes(49152)
for i in range(1, {segments + 2}):
    n = f"00000001{{i // 256:08X}}{{i % 256:08X}}"
    (tmp / "pg_wal" / n).write_bytes(segment(n, SYSID, fill=fill))
"""
    python = repo / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-c", code], check=True)
    return sorted(p.name for p in (work / "pg_wal").iterdir())


class Checkout:
    """One checkout's setup in its own work folder, and its timed pushes."""

    def __init__(self, repo: Path, work: Path) -> None:
        self.names = prepare(repo, work)
        self.exe = str(repo / ".venv" / "bin" / "pgharbor")
        self.env = {**os.environ, "PGHARBOR_STATE_DIR": str(work / "state")}
        self.url = f"sqlite:///{work}/catalog.db"
        self.work = work
        self.push(self.names[0])  # the placement cache

    def push(self, name: str) -> tuple[float, float]:
        return self.run("push", "c1", str(self.work / "pg_wal" / name))

    def fetch(self, name: str) -> tuple[float, float]:
        """restore_command outside a data directory (no prefetch), into a new file."""
        dest = self.work / "restored"
        dest.mkdir(exist_ok=True)
        try:
            return self.run("fetch", "c1", name, str(dest / name))
        finally:
            (dest / name).unlink()

    def run(self, verb: str, *args: str) -> tuple[float, float]:
        """(wall time, CPU time of the process: user + system), in ms. The CPU time moves
        far less with the load of other processes than the wall time does."""
        began = time.perf_counter()
        proc = subprocess.Popen([self.exe, "--catalog", self.url, "wal", verb, *args], env=self.env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = (time.perf_counter() - began) * 1000
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"wal {verb} {' '.join(args)} failed: exit {proc.returncode}")
        return wall, (usage.ru_utime + usage.ru_stime) * 1000


Samples = dict[str, list[float]]  # "new" / "again" / "fetch" x "wall" / "cpu" -> ms


def one_round(repos: list[Path], top: Path) -> dict[Path, Samples]:
    """Every checkout pushes segment 1, then every one segment 2, ... (the order rotating
    per segment, so each sees the same load), then all of them again (already archived),
    then every one fetches them back."""
    checkouts = {r: Checkout(r.resolve(), Path(tempfile.mkdtemp(dir=top))) for r in repos}
    out: dict[Path, Samples] = {r: {} for r in repos}
    for what in ("new", "again", "fetch"):
        for i in range(1, SEGMENTS + 1):
            for repo in repos[i % len(repos) :] + repos[: i % len(repos)]:
                c = checkouts[repo]
                wall, cpu = c.fetch(c.names[i]) if what == "fetch" else c.push(c.names[i])
                out[repo].setdefault(f"{what} wall", []).append(wall)
                out[repo].setdefault(f"{what} cpu", []).append(cpu)
    return out


def spread(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=4)
    return f"{statistics.median(ms):.1f} ms ({q[0]:.1f}-{q[2]:.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("repos", nargs="+", type=Path, help="checkouts with a built .venv")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    args = p.parse_args()
    samples: dict[Path, Samples] = {r: {} for r in args.repos}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="pgharbor-hot-") as top:
            for repo, got in one_round(args.repos, Path(top)).items():
                for k, v in got.items():
                    samples[repo].setdefault(k, []).extend(v)
    n = f"median (p25-p75) of {args.rounds} rounds x {SEGMENTS} segments, taking turns"
    print(f"wal push and wal fetch, wall time and CPU time (user + system), {n}:")
    for repo in args.repos:
        s = samples[repo]
        print(
            f"{repo}: new segment {spread(s['new wall'])}, CPU {spread(s['new cpu'])}; "
            f"archived one {spread(s['again wall'])}, CPU {spread(s['again cpu'])}; "
            f"wal fetch {spread(s['fetch wall'])}, CPU {spread(s['fetch cpu'])}"
        )


if __name__ == "__main__":
    sys.exit(main())
