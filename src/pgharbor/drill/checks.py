"""What a drill checks on its scratch copy. Each check returns a CheckOutcome: passed,
failed (with what), or skipped (``ok`` None, with why) when the tool is not there."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import psycopg

from pgharbor.catalog.drills import CheckOutcome
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.pitr import RecoveryTarget, parse_time
from pgharbor.domain.wal import WalKind, lsn_segno, parse_lsn, parse_name, segment_name
from pgharbor.drill.server import ScratchServer
from pgharbor.model import Cluster


def _tail(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = (proc.stderr + proc.stdout).decode(errors="replace").strip().splitlines()
    return " / ".join(lines[-3:]) or f"exit {proc.returncode}"


def verifybackup(bindir: Path, pgdata: Path) -> CheckOutcome:
    """pg_verifybackup of the restored directory against PostgreSQL's own manifest
    (every file's size and checksum; WAL is not parsed: it comes from the archive)."""
    tool = bindir / "pg_verifybackup"
    if not (pgdata / "backup_manifest").exists():
        return CheckOutcome(
            "pg_verifybackup", None, "no backup_manifest: only pgharbor's chunk checksums"
        )
    if not tool.exists():
        return CheckOutcome("pg_verifybackup", None, f"{tool} not installed")
    proc = subprocess.run(
        [str(tool), "-n", "-q", str(pgdata)], capture_output=True, timeout=3600, check=False
    )
    if proc.returncode != 0:
        return CheckOutcome("pg_verifybackup", False, _tail(proc))
    return CheckOutcome("pg_verifybackup", True, "every file matches the backup manifest")


def connect(server: ScratchServer) -> CheckOutcome:
    try:
        dbs = server.sql("SELECT count(*) FROM pg_database WHERE datallowconn")[0][0]
    except psycopg.Error as exc:
        return CheckOutcome("connect", False, str(exc).strip().splitlines()[0])
    return CheckOutcome("connect", True, f"{dbs} databases accept connections")


def amcheck(server: ScratchServer) -> CheckOutcome:
    """pg_amcheck over every database: heap and B-tree indexes (amcheck installed into
    the scratch copy where missing)."""
    tool = server.bindir / "pg_amcheck"
    if not tool.exists():
        return CheckOutcome("pg_amcheck", None, f"{tool} not installed")
    try:
        have = server.sql("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'")
    except psycopg.Error as exc:
        return CheckOutcome("pg_amcheck", False, str(exc).strip())
    if not have:
        return CheckOutcome("pg_amcheck", None, "the amcheck extension is not installed")
    args = [str(tool), "-h", str(server.sock), "-p", str(server.port), "-U", server.user]
    args += ["--all", "--install-missing", "--no-password"]
    proc = subprocess.run(args, capture_output=True, timeout=6 * 3600, check=False)
    if proc.returncode != 0:
        return CheckOutcome("pg_amcheck", False, _tail(proc))
    return CheckOutcome("pg_amcheck", True, "heap and indexes of every database")


def sql_file(server: ScratchServer, path: str | None) -> CheckOutcome | None:
    """Every statement of the cluster's drill_sql_file must return true."""
    if not path:
        return None
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        return CheckOutcome("sql", False, f"{path}: {exc.strerror or exc}")
    queries = [q.strip() for q in text.split(";") if q.strip() and not _comment(q)]
    for q in queries:
        try:
            rows = server.sql(q)
        except psycopg.Error as exc:
            return CheckOutcome("sql", False, f"{_short(q)}: {str(exc).strip()}")
        if not rows or rows[0][0] is not True:
            got = rows[0][0] if rows else "no row"
            return CheckOutcome("sql", False, f"{_short(q)} returned {got}, not true")
    return CheckOutcome("sql", True, f"{len(queries)} queries of {path} returned true")


def _comment(q: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in q.splitlines())


def _short(q: str) -> str:
    one = " ".join(q.split())
    return one if len(one) <= 80 else one[:77] + "..."


def archived_segments(catalog: Catalog, cluster: Cluster) -> dict[int, set[int]]:
    """Timeline -> the numbers of its segments with a good copy (taken before the scratch
    server starts: what the primary archives later is no part of this drill)."""
    size = cluster.wal_segment_size
    have: dict[int, set[int]] = {}
    for f in catalog.wal_files(cluster.name):
        wal = parse_name(f.name)
        ok = any(c.status == "ok" for c in f.copies)
        if ok and wal.kind is WalKind.SEGMENT:
            have.setdefault(wal.timeline, set()).add(wal.segno(size))
    return have


def recovery_point(
    archived: dict[int, set[int]],
    cluster: Cluster,
    target: RecoveryTarget,
    reached: tuple[int, str] | None,
    server: ScratchServer,
) -> CheckOutcome:
    """The point recovery reached matches the target: to the end of the archive it is in
    the archive's last segment (else a segment is missing: named); an LSN target is
    reached; a time target: the last replayed commit is not after it."""
    if reached is None:
        return CheckOutcome("recovery point", False, "no new timeline: the server was not promoted")
    tli, lsn_text = reached
    lsn, size = parse_lsn(lsn_text), cluster.wal_segment_size
    at = f"recovery ended at {lsn_text} on timeline {tli}"
    if target.kind == "end":
        have = archived.get(tli, set())
        last = max(have, default=-1)
        seg = lsn_segno(lsn, size)
        if seg < last:
            # the segment recovery needed next (where valid WAL ended) could not be
            # restored from any target: PostgreSQL took that for the end of the archive
            listed = [s for s in range(seg, last + 1) if s not in have]
            also = f"; the catalog lacks {len(listed)} more" if listed else ""
            return CheckOutcome(
                "recovery point",
                False,
                f"{at}, before the end of the archive ({segment_name(tli, last, size)}): "
                f"segment {segment_name(tli, seg, size)} is missing from every target "
                f"(a gap in the WAL{also})",
            )
        return CheckOutcome("recovery point", True, f"{at}, the end of the archive")
    if target.kind == "lsn" and target.value and lsn < parse_lsn(target.value):
        return CheckOutcome("recovery point", False, f"{at}, before the target {target.value}")
    if target.kind == "time" and target.value:
        last_commit = server.sql("SELECT pg_last_xact_replay_timestamp()")[0][0]
        if isinstance(last_commit, datetime) and last_commit > parse_time(target.value):
            return CheckOutcome(
                "recovery point", False, f"{at}: it replayed a commit at {last_commit}"
            )
    return CheckOutcome("recovery point", True, f"{at} ({target.describe()})")
