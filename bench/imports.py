#!/usr/bin/env python3
"""What the archive hot path's imports cost: the figures behind its lean dialect.

Run as the server's OS user, with the checkout's own venv, for example::

    runuser -u postgres -- REPO/.venv/bin/python bench/imports.py REPO [--runs 40]

Three measurements, each in fresh interpreters and taking turns (A B C A B C ...) so
every variant sees the same load from whatever else runs on the machine:

1. the import graph of a sync ``wal push`` of a new segment: the modules the real console
   script (``.venv/bin/pgharbor``, what archive_command runs) loads beyond a bare
   interpreter, with their ``-X importtime`` cumulative figures;
2. the marginal import cost of each candidate module (dataclasses, typing, json, re,
   enum, pathlib, logging, the zstandard package vs its C backend alone, a frozen
   dataclass of 12 fields), timed inside an interpreter that has already loaded what a
   push loads: what adding it to the hot path would cost;
3. the whole-process wall time of ``wal push`` of a new segment and of an already
   archived one, run as archive_command runs it, plain and with each candidate imported
   first (``python -c "import X; <the console script>"``).

Medians with the spread (25th-75th percentile) in milliseconds.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hotpath import prepare

# as the console script pip writes (.venv/bin/pgharbor) does it, after PRELOAD
SCRIPT = """{preload}
import re
import sys
from pgharbor.entry import main
sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
sys.exit(main())
"""

# (what the interpreter has loaded first, what is timed); "re" stands for the console
# script, which imports it (and with it enum, functools, ...) before pgharbor's code
CANDIDATES = {
    "re, as the console script does": ("", "import re"),
    "enum": ("", "import enum"),
    "json, no re yet": ("", "import json"),
    "json": ("import re", "import json"),
    "typing": ("import re", "import typing"),
    "dataclasses": ("import re", "import dataclasses"),
    "dataclasses, typing loaded already": ("import re, typing", "import dataclasses"),
    "14 frozen dataclasses of 6 fields": (
        "import re, dataclasses",
        "for i in range(14): dataclasses.make_dataclass(f'M{i}', list('abcdef'), frozen=True)",
    ),
    "14 Records of 6 fields": (
        "import re\nfrom pgharbor.plain import FrozenRecord",
        "for i in range(14): type(f'M{i}', (FrozenRecord,), {'__slots__': tuple('abcdef')})",
    ),
    "pathlib": ("import re", "import pathlib"),
    "logging": ("import re", "import logging"),
    "zstandard package": ("import re", "import zstandard"),
    "zstandard backend alone (envelope)": ("import re", "envelope.zstd()"),
    "pgharbor.crypto module": ("import re", "import pgharbor.crypto"),
    **{
        m: ("import re", f"import {m}")
        for m in (
            "urllib.parse",
            "subprocess",
            "concurrent.futures",
            "secrets",
            "contextlib",
            "platform",
            "tomllib",
            "cryptography.hazmat.primitives.ciphers.aead",
            "sqlalchemy",
            "alembic",
            "click",
            "rich",
            "boto3",
            "paramiko",
            "psycopg",
        )
    },
}
PRELOADS = {
    "as is": "",
    "+ json": "import json",
    "+ dataclasses, typing, json, pathlib, zstandard": (
        "import dataclasses, typing, json, pathlib, zstandard"
    ),
}
PUSH = "a whole wal push of a new segment"


def spread(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=4)
    return f"{statistics.median(ms):7.2f}  ({q[0]:.2f}-{q[2]:.2f})"


def bare_modules(python: str) -> set[str]:
    out = subprocess.run(
        [python, "-c", "import sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def graph(python: str, args: list[str], env: dict[str, str]) -> list[str]:
    """Modules a push loads beyond a bare interpreter, with -X importtime's figures."""
    preload = "import atexit\natexit.register(lambda: print(' '.join(sys.modules)))"
    code = SCRIPT.format(preload=preload)
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    loaded = set(proc.stdout.split()) - bare_modules(python)
    cumulative: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us, cum_us, name = (p.strip() for p in line[12:].split("|"))
            if self_us.isdigit():
                cumulative[name] = int(cum_us)
    return [f"{m:45s} {cumulative.get(m, 0) / 1000:6.2f} ms" for m in sorted(loaded)]


class Pusher:
    """Whole-process pushes, as archive_command runs them (after PRELOAD), each of the
    next new segment, then (when asked) of the same one again: already archived."""

    def __init__(self, python: str, work: Path, names: list[str]) -> None:
        self.python = python
        self.work = work
        self.fresh = iter(names)
        self.args = ["--catalog", f"sqlite:///{work}/catalog.db", "wal", "push", "c1"]
        self.env = {**os.environ, "PGHARBOR_STATE_DIR": str(work / "state")}

    def push(self, name: str, preload: str = "") -> float:
        code = SCRIPT.format(preload=preload)
        path = str(self.work / "pg_wal" / name)
        began = time.perf_counter()
        subprocess.run([self.python, "-c", code, *self.args, path], check=True, env=self.env)
        return (time.perf_counter() - began) * 1000

    def new(self, preload: str = "") -> tuple[str, float]:
        name = next(self.fresh)
        return name, self.push(name, preload)


def marginal(python: str, hot: list[str], runs: int, pusher: Pusher) -> dict[str, list[float]]:
    base = "import time\n" + "".join(f"import {m}\n" for m in hot)
    base += "from pgharbor import envelope\n"
    times: dict[str, list[float]] = {PUSH: [], **{k: [] for k in CANDIDATES}}
    for _ in range(runs):
        times[PUSH].append(pusher.new()[1])  # the yardstick, under the same load
        for what, (first, stmt) in CANDIDATES.items():
            code = f"{first}\n{base}t0 = time.perf_counter_ns()\n{stmt}\n"
            code += "print(time.perf_counter_ns() - t0)"
            out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
            times[what].append(int(out.stdout) / 1e6)
    return times


def whole(runs: int, pusher: Pusher) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for _ in range(runs):
        for what, preload in PRELOADS.items():
            name, ms = pusher.new(preload)
            times.setdefault(f"new, {what}", []).append(ms)
            times.setdefault(f"archived, {what}", []).append(pusher.push(name, preload))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("repo", type=Path, help="a checkout with a built .venv")
    p.add_argument("--runs", type=int, default=40, help="runs of each variant (default 40)")
    args = p.parse_args()
    repo = args.repo.resolve()
    python = str(repo / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="pgharbor-imports-") as tmp:
        work = Path(tmp)
        names = prepare(repo, work, args.runs * (len(PRELOADS) + 1) + 2)
        pusher = Pusher(python, work, names)
        pusher.new()  # the placement cache
        name = next(pusher.fresh)
        lines = graph(python, [*pusher.args, str(work / "pg_wal" / name)], pusher.env)
        print("1. modules a sync wal push of a new segment loads (beyond a bare interpreter),")
        print("   -X importtime cumulative:")
        print("\n".join("   " + line for line in lines), flush=True)
        hot = sorted(line.split()[0] for line in lines if line.startswith("pgharbor"))
        print("\n2. marginal import cost after what a push loads, ms, median (p25-p75) of")
        print(f"   {args.runs}, and the median as a share of a whole push's median:")
        times = marginal(python, hot, args.runs, pusher)
        yardstick = statistics.median(times[PUSH])
        for what, ms in times.items():
            share = 100 * statistics.median(ms) / yardstick
            print(f"   {what:45s} {spread(ms)}  {share:5.1f} %", flush=True)
        print(f"\n3. whole wal push, ms, median (p25-p75) of {args.runs}:")
        for what, ms in whole(args.runs, pusher).items():
            print(f"   {what:60s} {spread(ms)}")


if __name__ == "__main__":
    main()
