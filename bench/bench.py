#!/usr/bin/env python3
"""pgharbor vs pgBackRest, side by side, on one throwaway PostgreSQL 15 cluster.

Run through ``bench/run`` (installs what is missing, then runs this as ``postgres``).
See docs/benchmarks.md for what each phase measures. Writes ``results.json``,
``results.md`` and ``benchmark.png`` to ``--out`` (default bench/out/).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import phases
import report
from cluster import PRIMARY_SETTINGS, Server
from common import Size, run, say
from tools import PgBackRest, Pgharbor, Plain, zstd_version

HERE = Path(__file__).resolve().parent


QUICK = Size(
    "quick", scale=10, segments=40, load_seconds=20, load_rounds=1, big_gb=0, backlog=40, rounds=1
)
FULL = Size("full", scale=70, segments=210, load_seconds=45, load_rounds=1, big_gb=4.0, backlog=200)


def machine(workdir: Path) -> dict[str, Any]:
    mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in ln)
    disk = shutil.disk_usage(workdir)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.machine(),
    )
    fs = run(["df", "--output=source,fstype", str(workdir)]).splitlines()[-1].split()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": round(int(mem.split()[1]) / 1024 / 1024, 1),
        "disk": f"{fs[0]} ({fs[1]}), {disk.total / 1e9:.0f} GB",
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


GIT = ["git", "-c", "safe.directory=*", "-C", str(HERE.parent)]


def source_state(rev: str | None = None) -> str:
    """Which pgharbor code runs: the checkout's commit and the id of its src/ tree
    (``+changes`` when the working tree differs), or the snapshot of ``rev``."""
    head = run([*GIT, "rev-parse", "--short", rev or "HEAD"], check=False).strip() or "?"
    tree = run([*GIT, "rev-parse", "--short", f"{rev or 'HEAD'}:src"], check=False).strip()
    if rev:
        return f"{head} (src tree {tree}, snapshot of {rev})"
    dirty = run([*GIT, "status", "--porcelain", "--", "src"], check=False).strip()
    return f"{head} (src tree {tree}{'+changes' if dirty else ''})"


def snapshot(rev: str, work: Path) -> None:
    """Run pgharbor's package as committed at ``rev`` (extracted into the work folder,
    first on PYTHONPATH), not the checkout's working tree, which may be mid-edit."""
    dest = work / "snapshot"
    dest.mkdir()
    run(f"{' '.join(GIT)} archive {rev} src/pgharbor | tar -x -C {dest}")
    os.environ["PYTHONPATH"] = str(dest / "src")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (~40 segments, ~180 MB)")
    p.add_argument("--workdir", type=Path, help="parent folder of the work folder (default /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--out", type=Path, default=HERE / "out", help="where results go")
    p.add_argument("--level", type=int, default=3, help="zstd level of both tools (default 3)")
    p.add_argument("--no-big", action="store_true", help="skip the 4 GB peak-RSS backup")
    p.add_argument("--snapshot", metavar="REV", help="run pgharbor's src/ as committed at REV")
    p.add_argument(
        "--pgbackrest",
        metavar="EXE",
        help="also measure this pgbackrest binary (e.g. the newest release built by hand), "
        "beside Debian's",
    )
    p.add_argument(
        "--pgharbor",
        default=os.environ.get("PGHARBOR_EXE", str(HERE.parent / ".venv" / "bin" / "pgharbor")),
        help="the pgharbor executable (default: the checkout's .venv)",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() == 0:
        print("bench.py: run me through bench/run (PostgreSQL refuses root)", file=sys.stderr)
        return 2
    size = QUICK if args.quick else FULL
    if args.no_big:
        size = dataclasses.replace(size, big_gb=0)
    parent = args.workdir or Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="pgharbor-bench-", dir=parent))
    args.out.mkdir(parents=True, exist_ok=True)
    # Python programs (pgharbor, also as archive/restore_command) byte-compile once into a
    # cache of the work folder, as an installed package is; this environment may forbid
    # writing bytecode, and the checkout's editable install is not writable by postgres.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    if args.snapshot:
        snapshot(args.snapshot, work)
    cores = os.cpu_count() or 2
    say(f"{size.mode} run in {work} ({cores} cores)")
    primary = Server(work / "pg" / "data", work / "pg")
    results: dict[str, Any] = {
        "size": asdict(size),
        "zstd_level": args.level,
        "machine": machine(parent),
    }
    began = time.monotonic()
    try:
        primary.pgdata.parent.mkdir(parents=True)
        primary.initdb()
        primary.own_settings()
        primary.configure({**PRIMARY_SETTINGS, "archive_command": "true"})
        primary.start()
        ph = Pgharbor(work / "pgharbor", args.pgharbor, args.level)
        brs = [PgBackRest(work / "pgbackrest", primary, args.level, cores)]
        if args.pgbackrest and os.path.realpath(args.pgbackrest) != os.path.realpath(brs[0].exe):
            brs.append(
                PgBackRest(
                    work / "pgbackrest-new",
                    primary,
                    args.level,
                    cores,
                    exe=args.pgbackrest,
                    label="pgbackrest_new",
                )
            )
        br = brs[0]
        results["versions"] = {
            "pgharbor": ph.version(),
            "pgbackrest": br.version(),
            **({"pgbackrest_new": brs[1].version()} if len(brs) > 1 else {}),
            "postgresql": run([primary.bin("postgres"), "--version"]).strip(),
            "zstd": zstd_version(),
            "pgharbor_source": source_state(args.snapshot),
            "pgharbor_package": run(
                [
                    str(Path(args.pgharbor).with_name("python")),
                    "-c",
                    "import pgharbor; print(pgharbor.__file__)",
                ],
                check=False,
            ).strip(),
        }
        results["features"] = {
            "pgharbor_async_push": ph.has_async,
            "pgharbor_prefetch_fetch": ph.has_prefetch,
        }
        plain = Plain(work / "plain", args.level)
        bench = phases.Phases(work, primary, ph, brs, plain, size, results)
        bench.run_all()
    finally:
        results["total_seconds"] = round(time.monotonic() - began, 1)
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if "versions" in results and not args.snapshot:
            start, end = results["versions"]["pgharbor_source"], source_state()
            if start.split(" ", 1)[1] != end.split(" ", 1)[1]:
                results["versions"]["pgharbor_source_at_end"] = end
                say(f"warning: pgharbor's source changed during the run: {start} -> {end}")
        primary.stop("immediate")
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    table = report.table(results)
    (args.out / "results.md").write_text(table + "\n")
    report.chart(results, args.out / "benchmark.png")
    print(table)
    say(f"wrote {args.out}/results.json, results.md, benchmark.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
