#!/usr/bin/env python3
"""The per-segment cost of `wal push` (sync archive_command), for one or more checkouts
side by side: the median wall time of pushing a new segment and of pushing one that is
already archived (PostgreSQL offers a file again after a crash), to two file targets.

Run as the server's OS user, with a checkout's own venv, for example::

    runuser -u postgres -- REPO/.venv/bin/python bench/hotpath.py REPO [OTHER_REPO ...]

Each checkout gets a fresh SQLite catalog and targets (built with its own code) and 40
segments with valid headers that compress about 4x, as WAL does. Sources must be
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


def measure(repo: Path, work: Path) -> tuple[float, float]:
    names = prepare(repo, work)
    exe = str(repo / ".venv" / "bin" / "pgharbor")
    env = {**os.environ, "PGHARBOR_STATE_DIR": str(work / "state")}
    url = f"sqlite:///{work}/catalog.db"

    def push(name: str) -> float:
        began = time.perf_counter()
        path = str(work / "pg_wal" / name)
        subprocess.run([exe, "--catalog", url, "wal", "push", "c1", path], check=True, env=env)
        return time.perf_counter() - began

    push(names[0])  # the placement cache
    new = [push(n) for n in names[1:]]
    again = [push(n) for n in names[1:]]
    return statistics.median(new) * 1000, statistics.median(again) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("repos", nargs="+", type=Path, help="checkouts with a built .venv")
    p.add_argument("--rounds", type=int, default=3, help="rounds, taking turns (default 3)")
    args = p.parse_args()
    results: dict[Path, list[tuple[float, float]]] = {r: [] for r in args.repos}
    for _ in range(args.rounds):
        for repo in args.repos:
            with tempfile.TemporaryDirectory(prefix="pgharbor-hot-") as work:
                results[repo].append(measure(repo.resolve(), Path(work)))
    for repo, rounds in results.items():
        new = statistics.median(r[0] for r in rounds)
        again = statistics.median(r[1] for r in rounds)
        print(
            f"{repo}: wal push of a new segment {new:.1f} ms, of an archived one {again:.1f} ms "
            f"(medians of {args.rounds} rounds x {SEGMENTS} segments)"
        )


if __name__ == "__main__":
    sys.exit(main())
