#!/usr/bin/env python3
"""Delta restore, side by side: pgharbor against pgBackRest with block incremental (and,
when installed, Debian's pgBackRest without it), in one run on one server.

One PostgreSQL 15 server with a pgbench database; the archive_command pushes to every
tool. A full backup by each tool, then 10 % of pgbench_accounts changed and a checkpoint,
a second backup by each (pgBackRest: ``incr``), then at least 16 segments of WAL (pgbench)
archived by all. Each round, per tool (the tools take turns, the order alternating):

- a fresh (untimed) restore of the newest backup into the tool's data directory;
- (a) ``delta``: a delta restore of the FIRST backup over it, seconds;
- (b) ``delta_replay``: a delta restore of the newest backup over the copy of (a), then the
  server started: it replays the archive to its end and promotes; seconds from the start
  of the delta restore until it accepts read-write connections (its log says so).

Medians of ``--rounds``; the 1/5/15-minute load averages are recorded before each phase.

Usage (as root: re-runs itself as postgres), from the repository:
    .venv/bin/python bench/delta.py [--rounds 3] [--scale 50] [--segments 16]
        [--pgbackrest /work/pgbr/bin/pgbackrest] [--no-debian] [--out bench/out/delta.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from cluster import PRIMARY_SETTINGS, Server  # noqa: E402
from common import BenchError, Timed, as_postgres, run, run_timed, say, work_folder  # noqa: E402
from tools import DEBIAN_PGBACKREST, PgBackRest, Pgharbor  # noqa: E402

PYTHON = REPO / ".venv" / "bin" / "python"
PGHARBOR = REPO / ".venv" / "bin" / "pgharbor"
NEWEST_PGBACKREST = "/work/pgbr/bin/pgbackrest"
LEVEL, CORES = 3, 2


class Tool:
    """One tool under test: its first and newest backup, and its restores."""

    def __init__(self, key: str, label: str) -> None:
        self.key, self.label = key, label
        self.first = self.newest = ""

    def restore(self, pgdata: Path, backup: str, delta: bool) -> Timed:
        raise NotImplementedError

    def after_replay(self) -> None:
        """Wait for what the restore_command left running (none by default)."""


class Harbor(Tool):
    def __init__(self, root: Path) -> None:
        super().__init__("pgharbor", "pgharbor")
        self.ph = Pgharbor(root, str(PGHARBOR), LEVEL)
        self.version = self.ph.version()

    def backup(self) -> dict[str, float]:
        r = self.ph.backup()
        last = json.loads(run(self.ph.cmd("backup", "list", "bench", "--json"), env=self.ph.env))
        self.first = self.first or last[-1]["id"]
        self.newest = last[-1]["id"]
        return _backup_row(r.seconds, r.logical_bytes, r.stored_bytes)

    def restore(self, pgdata: Path, backup: str, delta: bool) -> Timed:
        args = ["restore", "bench", "--pgdata", str(pgdata), "--backup", backup]
        return run_timed(self.ph.cmd(*args, *(["--delta"] if delta else [])), env=self.ph.env)

    def after_replay(self) -> None:
        self.ph.wait_residents_gone()  # the prefetcher exits after 10 s idle


class BackRest(Tool):
    def __init__(self, key: str, root: Path, server: Server, exe: str, block: bool) -> None:
        self.br = PgBackRest(root, server, LEVEL, CORES, exe=exe, label=key)
        self.version = self.br.version()
        super().__init__(key, self.version + (" block incremental" if block else ""))
        if block:
            text = self.br.conf.read_text()
            self.br.conf.write_text(
                text.replace("[global]\n", "[global]\nrepo1-bundle=y\nrepo1-block=y\n", 1)
            )

    def backup(self, kind: str) -> dict[str, float]:
        r = self.br.backup(kind)
        info = json.loads(run(self.br.cmd("--output=json", "info"), env=self.br.env))
        self.first = self.first or info[0]["backup"][-1]["label"]
        self.newest = info[0]["backup"][-1]["label"]
        return _backup_row(r.seconds, r.logical_bytes, r.stored_bytes)

    def restore(self, pgdata: Path, backup: str, delta: bool) -> Timed:
        pgdata.mkdir(mode=0o700, exist_ok=True)
        args = [f"--pg1-path={pgdata}", "--type=default", f"--set={backup}"]
        return run_timed(
            self.br.cmd(*args, *(["--delta"] if delta else []), "restore"), env=self.br.env
        )


def _backup_row(seconds: float, logical: int, stored: int) -> dict[str, float]:
    return {
        "seconds": round(seconds, 2),
        "logical_mb": round(logical / 1e6, 1),
        "stored_mb": round(stored / 1e6, 1),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def one_round(work: Path, tools: list[Tool], r: int) -> dict[str, dict[str, Any]]:
    order = tools if r % 2 == 0 else list(reversed(tools))
    copies = {t.key: Server(work / f"copy-{t.key}" / "data", work / f"copy-{t.key}") for t in tools}
    for t in order:  # a data directory holding the newest restore (untimed)
        base = copies[t.key].base
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        t.restore(copies[t.key].pgdata, t.newest, delta=False)
    os.sync()
    out: dict[str, dict[str, Any]] = {t.key: {} for t in tools}
    for t in order:  # (a) delta restore of the first backup
        load = _load()
        d = t.restore(copies[t.key].pgdata, t.first, delta=True)
        out[t.key]["delta"] = {"seconds": round(d.seconds, 2), "load": load}
        say(f"round {r}: {t.key}: delta restore of the first backup {d.seconds:.2f} s, load {load}")
    os.sync()
    for t in order:  # (b) delta restore of the newest + replay + promote
        copy = copies[t.key]
        load = _load()
        began = time.perf_counter()
        d = t.restore(copy.pgdata, t.newest, delta=True)
        copy.own_settings()
        copy.configure({"archive_mode": "off", "shared_buffers": "512MB"})
        copy.logfile.unlink(missing_ok=True)
        copy.start(wait=False)
        try:
            copy.wait_recovered()
            total = time.perf_counter() - began
            segments = copy.restored_segments()
        finally:
            copy.stop("immediate")
        t.after_replay()
        out[t.key]["delta_replay"] = {
            "delta_seconds": round(d.seconds, 2),
            "seconds": round(total, 2),
            "segments": segments,
            "load": load,
        }
        say(
            f"round {r}: {t.key}: delta restore of the newest {d.seconds:.2f} s, "
            f"+ replay of {segments} segments + promote {total:.2f} s, load {load}"
        )
    for copy in copies.values():
        shutil.rmtree(copy.base, ignore_errors=True)
    return out


def medians(rounds: list[dict[str, dict[str, Any]]], key: str) -> dict[str, Any]:
    def med(phase: str, field: str) -> float:
        return round(statistics.median(x[key][phase][field] for x in rounds), 2)

    return {
        "delta_seconds": med("delta", "seconds"),
        "delta_replay_delta_seconds": med("delta_replay", "delta_seconds"),
        "delta_replay_seconds": med("delta_replay", "seconds"),
        "segments": min(x[key]["delta_replay"]["segments"] for x in rounds),
    }


def table(res: dict[str, Any]) -> str:
    keys = [k for k in ("pgbackrest_debian", "pgbackrest_block") if k in res["tools"]]
    keys.append("pgharbor")
    ref = res["median"]["pgbackrest_block"]
    ours = res["median"]["pgharbor"]
    head = "| phase | " + " | ".join(res["tools"][k] for k in keys)
    lines = [head + " | pgharbor / block incremental |", "|---" * (len(keys) + 2) + "|"]

    def row(name: str, cells: list[str], ratio: str) -> None:
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")

    row(
        "full backup, s",
        [f"{res['backups'][k]['full']['seconds']:.2f}" for k in keys],
        f"{res['backups']['pgharbor']['full']['seconds'] / res['backups']['pgbackrest_block']['full']['seconds']:.2f}x",
    )
    row(
        "second backup after a 10 % change, s (MB added)",
        [
            f"{res['backups'][k]['second']['seconds']:.2f} ({res['backups'][k]['second']['stored_mb']:.1f})"
            for k in keys
        ],
        f"{ours_mb(res) / res['backups']['pgbackrest_block']['second']['stored_mb']:.2f}x MB",
    )
    for field, name in (
        ("delta_seconds", "(a) delta restore of the first backup over the newest, s"),
        ("delta_replay_delta_seconds", "(b) delta restore of the newest over (a), s"),
        (
            "delta_replay_seconds",
            f"(b) delta restore + replay (>= {ours['segments']} segments) + promote, s",
        ),
    ):
        row(
            name,
            [f"{res['median'][k][field]:.2f}" for k in keys],
            f"{ours[field] / ref[field]:.2f}x",
        )
    row(
        "(b) segments replayed (min over rounds)",
        [str(res["median"][k]["segments"]) for k in keys],
        "",
    )
    loads = [
        x[k][p]["load"][0]
        for x in res["rounds_raw"]
        for k in keys
        for p in ("delta", "delta_replay")
    ]
    lines.append(
        f"\nload average (1 min) before the phases: {min(loads):.2f} .. {max(loads):.2f}; "
        f"{res['cores']} cores; pgbench -s {res['scale']} ({res['database_bytes'] / 1e6:.0f} MB); "
        f"medians of {res['rounds']} rounds"
    )
    return "\n".join(lines)


def ours_mb(res: dict[str, Any]) -> float:
    return float(res["backups"]["pgharbor"]["second"]["stored_mb"])


def generate_wal(server: Server, segments: int) -> tuple[str, str]:
    """At least ``segments`` segments of pgbench WAL, all archived by every tool."""
    start = server.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    while True:
        server.pgbench("-n", "-c", "4", "-j", "2", "-T", "5", "-b", "tpcb-like")
        cur = server.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        if int(cur[8:], 16) - int(start[8:], 16) >= segments:
            break
    server.switch_wal()
    server.wait_archived()
    return start, cur


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scale", type=int, default=50, help="pgbench scale (50: ~800 MB)")
    p.add_argument("--segments", type=int, default=16, help="WAL segments to replay in (b)")
    p.add_argument("--pgbackrest", default=NEWEST_PGBACKREST, help="pgBackRest with block incr.")
    p.add_argument(
        "--no-debian", action="store_true", help=f"skip {DEBIAN_PGBACKREST} even if installed"
    )
    p.add_argument("--out", type=Path, default=HERE / "out" / "delta.json")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args(argv)
    rerun = as_postgres(__file__, argv, args.out, "pgharbor-delta-")
    if rerun is not None:
        return rerun
    if not os.access(args.pgbackrest, os.X_OK):
        raise SystemExit(f"no pgBackRest at {args.pgbackrest} (--pgbackrest EXE)")
    work = work_folder("pgharbor-delta-")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    server = Server(work / "pg" / "data", work / "pg")
    began = time.monotonic()
    try:
        server.pgdata.parent.mkdir(parents=True)
        server.initdb()
        server.own_settings()
        server.configure({**PRIMARY_SETTINGS, "archive_command": "true"})
        server.start()
        harbor = Harbor(work / "pgharbor")
        harbor.ph.setup(server)
        brs = [BackRest("pgbackrest_block", work / "br-block", server, args.pgbackrest, True)]
        use_debian = not args.no_debian and os.access(DEBIAN_PGBACKREST, os.X_OK)
        if use_debian and os.path.realpath(DEBIAN_PGBACKREST) != os.path.realpath(args.pgbackrest):
            brs.insert(
                0, BackRest("pgbackrest_debian", work / "br-deb", server, DEBIAN_PGBACKREST, False)
            )
        for b in brs:
            b.br.stanza_create()
        commands = [harbor.ph.archive_command, *(b.br.archive_command(False) for b in brs)]
        server.set_archive_command(" && ".join(commands))
        say(f"pgbench -i -s {args.scale}")
        server.pgbench("-i", "-s", str(args.scale), "-q")
        server.sql("CHECKPOINT")
        tools: list[Tool] = [*brs, harbor]
        res: dict[str, Any] = {
            "scale": args.scale,
            "database_bytes": server.database_bytes(),
            "cores": os.cpu_count(),
            "rounds": args.rounds,
            "tools": {t.key: t.label for t in tools},
            "pgharbor_version": harbor.version,
            "load_start": _load(),
            "backups": {t.key: {} for t in tools},
        }
        for t in tools:
            row = t.backup("full") if isinstance(t, BackRest) else harbor.backup()
            res["backups"][t.key]["full"] = row
            say(f"{t.key}: full backup {row}")
        rows = int(server.sql("SELECT count(*) FROM pgbench_accounts"))
        server.sql(f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {rows // 10}")
        server.sql("CHECKPOINT")
        for t in tools:
            row = t.backup("incr") if isinstance(t, BackRest) else harbor.backup()
            res["backups"][t.key]["second"] = row
            say(f"{t.key}: second backup {row}")
        res["wal"] = generate_wal(server, args.segments)
        say(f"WAL after the second backup: {res['wal'][0]} .. {res['wal'][1]}")
        server.stop()  # nothing else runs during the restores
        res["rounds_raw"] = [one_round(work, tools, r) for r in range(args.rounds)]
        res["median"] = {t.key: medians(res["rounds_raw"], t.key) for t in tools}
        res["load_end"] = _load()
        res["seconds"] = round(time.monotonic() - began, 1)
    except BenchError as e:
        raise SystemExit(str(e)) from None
    finally:
        server.stop("immediate")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
