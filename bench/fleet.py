#!/usr/bin/env python3
"""A backup's cost on a shared target: the time and peak RSS of one cluster's backup on a
target that holds only its own chunk store, and on one that also holds the chunk stores
of many other clusters (synthesized: their packs, indexes and partition markers, with as
many chunks per cluster as the real one has; no other servers run), for two versions of
pgharbor side by side (before and after the chunk index was partitioned per cluster).

One PostgreSQL 15 server with a pgbench database; each version has its own catalog and
its own ``file://`` target; the archive_command pushes to both. Per version and target:
a first backup, then (after changing 1 % of the rows and a checkpoint) the measured
backups, ``--rounds`` of them taking turns; then the other clusters are written to both
targets and the same again. Packs of the synthesized clusters are sparse files of the
right size (no backup reads another cluster's packs); their indexes are real.

Usage (as root: re-runs itself as postgres), from the repository:
    .venv/bin/python bench/fleet.py --old REV [--new REV] [--clusters 200] [--scale 20]
        [--rounds 2] [--out bench/out/fleet.json]

``--old``/``--new``: a git revision whose ``src/pgharbor`` is extracted and run with this
checkout's virtualenv (default ``--new``: the working tree).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from cluster import PRIMARY_SETTINGS, Server  # noqa: E402
from common import as_postgres, run, run_timed, say, work_folder  # noqa: E402

PYTHON = REPO / ".venv" / "bin" / "python"
PACK_SIZE = 16 * 1024 * 1024


class Version:
    """One pgharbor version: its code, catalog, state folder and target."""

    def __init__(self, name: str, rev: str | None, work: Path) -> None:
        self.name, self.root = name, work / name
        self.repo = self.root / "repo"
        for folder in (self.root / "bin", self.repo, self.root / "state"):
            folder.mkdir(parents=True)
        src = REPO / "src"
        if rev is not None:
            (self.root / "code").mkdir()
            git = ["git", "-c", "safe.directory=*", "-C", str(REPO)]
            archive = subprocess.run(
                [*git, "archive", rev, "src/pgharbor"], check=True, capture_output=True
            )
            subprocess.run(
                ["tar", "-x", "-C", str(self.root / "code")], input=archive.stdout, check=True
            )
            src = self.root / "code" / "src"
        self.source = "working tree"
        if rev is not None:
            sha = subprocess.run(
                ["git", "-c", "safe.directory=*", "-C", str(REPO), "rev-parse", "--short", rev],
                capture_output=True,
                text=True,
            ).stdout.strip()
            self.source = rev if sha.startswith(rev) or not sha else f"{rev} = {sha}"
        # a console script named pgharbor (the archive_command it prints names itself)
        self.exe = self.root / "bin" / "pgharbor"
        self.exe.write_text(
            f"#!{PYTHON}\nimport sys\nsys.path.insert(0, {str(src)!r})\n"
            "from pgharbor.entry import main\nsys.exit(main())\n"
        )
        self.exe.chmod(0o755)
        self.config = self.root / "pgharbor.toml"
        self.config.write_text(
            f'catalog = "sqlite:///{self.root}/catalog.db"\n'
            f'state_dir = "{self.root}/state"\n'
            'compression = "zstd"\ncompression_level = 3\n'
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYTHONPATH"))}
        self.archive_command = ""

    def cmd(self, *args: str) -> list[str]:
        return [str(self.exe), "--config", str(self.config), *args]

    def setup(self, server: Server) -> None:
        run(self.cmd("init"), env=self.env)
        run(self.cmd("target", "add", "t", f"file://{self.repo}"), env=self.env)
        out = run(self.cmd("cluster", "add", "c1", "--dsn", server.dsn), env=self.env)
        line = next(x for x in out.splitlines() if x.strip().startswith("archive_command"))
        self.archive_command = line.split(" = ", 1)[1].strip().strip("'").replace("''", "'")
        run(self.cmd("placement", "add", "c1", "t", "--priority", "1"), env=self.env)

    def backup(self) -> dict[str, float]:
        t = run_timed(self.cmd("backup", "create", "c1"), env=self.env)
        if t.returncode:
            raise SystemExit(f"{self.name}: backup failed: {t.stderr}")
        last = json.loads(run(self.cmd("backup", "list", "c1", "--json"), env=self.env))[-1]
        return {
            "seconds": round(t.seconds, 2),
            "maxrss_mib": round(t.maxrss_kib / 1024, 1),
            "stored_mb": round(last["stored_bytes"] / 1e6, 2),
        }


def _own_store(repo: Path) -> tuple[int, int]:
    """(packs, chunks) of the one cluster's store, read from its indexes."""
    from pgharbor.backup.chunks import parse_index

    index = repo / "chunks" / "index"
    chunks = sum(len(parse_index(p.name, p.read_bytes())) for p in index.iterdir())
    return len(list(index.iterdir())), chunks


def synthesize(repos: list[Path], clusters: int, packs: int, chunks: int) -> None:
    """``clusters`` other clusters' stores of ``packs`` packs holding ``chunks`` chunks in
    all, the same on every repo: sparse packs, real indexes, partition markers."""
    import zstandard

    comp = zstandard.ZstdCompressor(level=3)
    per_pack = max(1, chunks // packs)
    length = PACK_SIZE // per_pack
    for k in range(clusters):
        name = f"other{k:03d}"
        for _ in range(packs):
            pack = secrets.token_hex(16)
            entries = [[secrets.token_hex(32), i * length, length, 65536] for i in range(per_pack)]
            doc = {"format": "pgharbor-chunk-index/1", "pack": pack, "size": PACK_SIZE}
            blob = comp.compress(json.dumps({**doc, "chunks": entries}).encode())
            for repo in repos:
                folder = repo / "chunks" / "packs" / pack[:2]
                folder.mkdir(parents=True, exist_ok=True)
                with open(folder / pack, "wb") as f:
                    f.truncate(PACK_SIZE)
                (repo / "chunks" / "index" / pack).write_bytes(blob)
                marks = repo / "chunks" / "partitions" / name
                marks.mkdir(parents=True, exist_ok=True)
                (marks / pack).write_bytes(pack.encode())
        if k % 50 == 49:
            say(f"  {k + 1} clusters written")


def measure(server: Server, versions: list[Version], rounds: int, label: str) -> dict[str, Any]:
    out: dict[str, list[dict[str, float]]] = {v.name: [] for v in versions}
    rows = int(server.sql("SELECT count(*) FROM pgbench_accounts"))
    for r in range(rounds):
        first = (r * 7 % 100) * rows // 100  # 1 % of the rows, others each round
        server.sql(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 "
            f"WHERE aid > {first} AND aid <= {first + rows // 100}"
        )
        server.sql("CHECKPOINT")
        for v in versions if r % 2 == 0 else reversed(versions):
            os.sync()  # what the other version wrote is not this backup's to write out
            row = v.backup()
            out[v.name].append(row)
            say(f"{label}: {v.name}: {row}")
    return {
        name: {
            "seconds": statistics.median(x["seconds"] for x in rows),
            "maxrss_mib": max(x["maxrss_mib"] for x in rows),
            "stored_mb": statistics.median(x["stored_mb"] for x in rows),
            "runs": rows,
        }
        for name, rows in out.items()
    }


def table(res: dict[str, Any]) -> str:
    n = res["clusters"]
    lines = [
        f"| pgharbor | backup, 1 cluster on the target | backup, {n} clusters on the target "
        "| time ratio | peak RSS, 1 cluster | peak RSS, " + f"{n} clusters |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("before", "after"):
        one, many = res["one"][name], res["many"][name]
        lines.append(
            f"| {name} ({res['sources'][name]}) | {one['seconds']:.2f} s | {many['seconds']:.2f} s "
            f"| {many['seconds'] / one['seconds']:.2f}x | {one['maxrss_mib']:.0f} MiB "
            f"| {many['maxrss_mib']:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="git revision of the 'before' code")
    p.add_argument("--new", help="git revision of the 'after' code (default: working tree)")
    p.add_argument("--clusters", type=int, default=200, help="clusters on the shared target")
    p.add_argument("--scale", type=int, default=20, help="pgbench scale of the real cluster")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "out" / "fleet.json")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    rerun = as_postgres(__file__, argv, args.out, "pgharbor-fleet-")
    if rerun is not None:
        return rerun
    work = work_folder("pgharbor-fleet-")
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
        versions = [Version("before", args.old, work), Version("after", args.new, work)]
        for v in versions:
            v.setup(server)
        server.set_archive_command(" && ".join(v.archive_command for v in versions))
        say(f"pgbench -i -s {args.scale}")
        server.pgbench("-i", "-s", str(args.scale), "-q")
        server.sql("CHECKPOINT")
        for v in versions:
            say(f"{v.name}: first backup {v.backup()}")
        packs, chunks = _own_store(versions[1].repo)
        res: dict[str, Any] = {
            "clusters": args.clusters,
            "scale": args.scale,
            "database_bytes": server.database_bytes(),
            "own_store": {"packs": packs, "chunks": chunks},
            "sources": {v.name: v.source for v in versions},
            "cores": os.cpu_count(),
        }
        res["one"] = measure(server, versions, args.rounds, "1 cluster")
        say(
            f"writing {args.clusters - 1} other clusters' stores ({packs} packs, {chunks} chunks each)"
        )
        synthesize([v.repo for v in versions], args.clusters - 1, packs, chunks)
        os.sync()  # not the measured backups' fsyncs that write those out
        res["many"] = measure(server, versions, args.rounds, f"{args.clusters} clusters")
        res["seconds"] = round(time.monotonic() - began, 1)
    finally:
        server.stop("immediate")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
