"""Named restore points: made through SQL on the cluster (``restore-point create``) or
found in the archived WAL (made with plain ``pg_create_restore_point``).

The archived WAL is read by PostgreSQL's own pg_waldump, never by a reimplementation:
consecutive archived segments of a timeline are fetched (verified, decrypted) into a
temporary folder, a few at a time, and pg_waldump lists their restore point records. Each
batch starts with the last segment of the one before, so a record that spans two
segments is seen whole. How far each timeline was scanned is remembered: up to the first
segment the archive lacks (a later scan tries again from there).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgharbor.catalog.repo import Catalog
from pgharbor.catalog.restore_points import RestorePointRepo
from pgharbor.domain.pitr import RestorePoint, record_end
from pgharbor.domain.wal import WalKind, WalName, format_lsn, parse_lsn, parse_name
from pgharbor.errors import PostgresError, UsageError
from pgharbor.settings import Settings

if TYPE_CHECKING:
    from pgharbor.model import Cluster

log = logging.getLogger(__name__)

BATCH = 8  # segments per pg_waldump run: the temporary folder holds at most this many
MAX_NAME = 63  # bytes (NAMEDATALEN - 1)
_RECORD = re.compile(
    r"len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+/[0-9A-F]+), "
    r"prev [0-9A-F]+/[0-9A-F]+, desc: RESTORE_POINT (.*)$"
)


def check_name(name: str) -> None:
    if not name or len(name.encode()) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UsageError(
            f"a restore point name is 1 to {MAX_NAME} bytes without control characters, "
            f"not {name[:80]!r}"
        )


def create_point(catalog: Catalog, cluster_name: str, name: str) -> RestorePoint:
    """pg_create_restore_point(name) on the cluster's primary; recorded in the index."""
    from pgharbor.pg import identity

    check_name(name)
    cluster = catalog.cluster(cluster_name)
    with identity.connect(cluster.dsn) as conn:
        identity.require_primary(
            conn,
            cluster.system_identifier,
            cluster.name,
            "the server is a standby: create restore points on the primary",
        )
        row = _create(conn, name)
    lsn, walfile, when = row
    point = RestorePoint(name, format_lsn(parse_lsn(lsn)), int(walfile[:8], 16), when, "created")
    RestorePointRepo(catalog).add(cluster.id, [point])
    return point


def _create(conn: Any, name: str) -> tuple[str, str, datetime]:
    import psycopg

    try:
        row = conn.execute(
            "SELECT lsn::text, pg_walfile_name(lsn), clock_timestamp()"
            " FROM pg_create_restore_point(%s) AS lsn",
            (name,),
        ).fetchone()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PostgresError(f"pg_create_restore_point failed: {first}") from None
    assert row is not None
    return str(row[0]), str(row[1]), row[2]


def list_points(catalog: Catalog, settings: Settings, cluster_name: str) -> list[RestorePoint]:
    """The index of the cluster's restore points, after scanning newly archived WAL."""
    cluster = catalog.cluster(cluster_name)
    scan(catalog, settings, cluster)
    return RestorePointRepo(catalog).for_cluster(cluster.id)


def _archived(catalog: Catalog, cluster: Cluster) -> dict[int, dict[int, WalName]]:
    """Archived segments with a good copy, per timeline and segment number (a full
    segment wins over a .partial of the same number)."""
    found: dict[int, dict[int, WalName]] = {}
    for f in catalog.wal_files(cluster.name):
        if not any(c.status == "ok" for c in f.copies):
            continue
        wal = parse_name(f.name)
        if wal.kind is not WalKind.SEGMENT and wal.kind is not WalKind.PARTIAL:
            continue
        segs = found.setdefault(wal.timeline, {})
        n = wal.segno(cluster.wal_segment_size)
        if n not in segs or wal.kind is WalKind.SEGMENT:
            segs[n] = wal
    return found


def scan(catalog: Catalog, settings: Settings, cluster: Cluster) -> int:
    """Add the restore points of newly archived WAL to the index; returns how many."""
    from pgharbor.pg.local import find_bindir

    repo = RestorePointRepo(catalog)
    done = repo.scanned(cluster.id)
    places = [p for p in catalog.placements(cluster.name) if p.active]
    ctx = cluster.with_placements(tuple(places))
    waldump = str(find_bindir(cluster.version_num // 10000) / "pg_waldump")
    added = 0
    for tli, segs in sorted(_archived(catalog, cluster).items()):
        last = done.get(tli)
        start = parse_name(last).segno(cluster.wal_segment_size) if last else min(segs)
        todo = sorted(n for n in segs if n >= start)
        if last and todo == [start]:
            continue  # nothing new on this timeline
        for k, run in enumerate(_runs(todo)):
            for batch in _batches(run):
                names = [segs[n] for n in batch]
                found, read = _dump(waldump, settings, ctx, names, cluster.wal_segment_size)
                added += repo.add(cluster.id, found)
                if read < len(names):
                    break
                if k == 0:  # contiguous from where the last scan stopped
                    repo.set_scanned(cluster.id, tli, names[-1].name)
    return added


def _runs(numbers: list[int]) -> list[list[int]]:
    """Sorted segment numbers cut where one is missing."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and runs[-1][-1] + 1 == n:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def _batches(run: list[int]) -> list[list[int]]:
    """At most BATCH segments each; each batch starts with the last one of the batch before
    (a record spanning two segments is whole in one of them)."""
    out = [run[:BATCH]]
    i = BATCH - 1
    while i + 1 < len(run):
        out.append(run[i : i + BATCH])
        i += BATCH - 1
    return out


def _dump(
    waldump: str, settings: Settings, ctx: Cluster, names: list[WalName], segment_size: int
) -> tuple[list[RestorePoint], int]:
    """The restore points pg_waldump finds in these consecutive segments, and how many of
    them could be read (a segment the targets lack ends the run there)."""
    from pgharbor.archive.fetch import read_archived

    with tempfile.TemporaryDirectory(prefix="pgharbor-waldump-") as tmp:
        read = 0
        for wal in names:
            got = read_archived(settings, ctx, wal)
            if got is None:
                log.warning("%s is in the catalog but on no target: scan stops there", wal.name)
                break
            with open(os.path.join(tmp, wal.name[:24]), "wb") as f:
                f.write(got[0])
            read += 1
        if not read:
            return [], 0
        first, last = names[0].name[:24], names[read - 1].name[:24]
        out = _run(waldump, tmp, first, last)
    tli = names[0].timeline
    points = []
    for line in out.splitlines():
        m = _RECORD.search(line)
        if m:
            end = record_end(parse_lsn(m.group(2)), int(m.group(1)), segment_size)
            points.append(RestorePoint(m.group(3), format_lsn(end), tli, None, "wal"))
    return points, read


def _run(waldump: str, folder: str, first: str, last: str) -> str:
    """pg_waldump's records; the end of valid WAL (the zeros after a .partial's last
    record) is where it stops, not a failure."""
    args = [waldump, "-p", folder, "--rmgr=XLOG", first, last]
    try:
        proc = subprocess.run(args, capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresError(f"cannot run {waldump}: {exc}") from None
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0 and "error in WAL record" not in err:
        line = err.splitlines()[-1] if err else f"exit {proc.returncode}"
        raise PostgresError(f"pg_waldump failed on {first}..{last}: {line}")
    return proc.stdout.decode(errors="replace")
