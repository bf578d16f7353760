"""drill run: prove a backup recoverable by restoring it and starting it.

1. plan (the backup, the timeline), check the disk space of the drill folder (refused
   with the figures before anything is written), find the binaries of the cluster's
   major version;
2. record the drill as ``running`` (its host, pid and a heartbeat): from then on expire
   keeps its backup, and so the WAL after it (catalog.drills); then check the backup is
   still usable (an expire that marked it first wins: the drill is refused);
3. restore into a fresh scratch folder (``--archive-mode off``), pg_verifybackup;
4. start the scratch server (drill.server: loopback, own socket and hba, no archiving),
   wait for the target and the promotion; checks: connect, the recovery point, pg_amcheck,
   the cluster's SQL file;
5. record the outcome, stop the server, remove the scratch folder (kept on failure or
   with --keep).

A drill reads the targets (through restore and restore_command) and writes only its
scratch folder and its catalog row: it never connects to the cluster's primary.
"""

from __future__ import annotations

import getpass
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgharbor import faultpoint
from pgharbor.catalog.backups import Backup, BackupRepo
from pgharbor.catalog.drills import CheckOutcome, DrillRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.pitr import RecoveryTarget
from pgharbor.domain.wal import lsn_segno, parse_lsn
from pgharbor.drill import checks
from pgharbor.drill.server import ScratchServer
from pgharbor.errors import PgharborError, StorageError, UsageError
from pgharbor.model import Cluster
from pgharbor.settings import Settings

HEARTBEAT = 30.0  # seconds between two heartbeats of a running drill
Say = Callable[[str], None]


@dataclass
class DrillResult:
    id: int
    cluster: str
    backup_id: str
    target: str
    restore_s: float = 0.0
    recovery_s: float = 0.0
    total_s: float = 0.0
    wal_segments: int = 0
    bytes_restored: int = 0
    reached_lsn: str | None = None
    checks: list[CheckOutcome] = field(default_factory=list)
    error: str | None = None
    scratch: str | None = None  # kept for a human to look at

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok is not False for c in self.checks)


def drill_dir(settings: Settings) -> Path:
    return Path(settings.drill_dir or os.path.join(settings.state_dir, "drills")).expanduser()


def space_needed(backup: Backup, segment_size: int) -> int:
    """The backup's data, a tenth more, and a few segments of WAL being replayed."""
    return int(backup.logical_bytes * 1.1) + 4 * segment_size


def check_space(folder: Path, backup: Backup, segment_size: int) -> None:
    need, free = space_needed(backup, segment_size), shutil.disk_usage(folder).free
    if free < need:
        raise StorageError(
            f"drill refused: {folder} has {free / 2**20:.1f} MiB free, the drill of backup "
            f"{backup.id} needs {need / 2**20:.1f} MiB (its {backup.logical_bytes / 2**20:.1f} "
            "MiB of data, a tenth more, 4 WAL segments); nothing was written",
            hint="free space there, or set drill_dir to a larger folder",
        )


def _user(cluster: Cluster) -> str:
    """The role the drill connects as: the cluster's DSN's user, else the OS user."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        user = conninfo_to_dict(cluster.dsn).get("user")
    except Exception:
        user = None
    return str(user) if user else getpass.getuser()


@contextmanager
def _heartbeat(repo: DrillRepo, drill_id: int) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            try:
                repo.heartbeat(drill_id)
            except Exception:  # the catalog is back later; the drill goes on
                continue

    thread = threading.Thread(target=beat, name="drill-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class _Job:
    catalog: Catalog
    settings: Settings
    cluster: Cluster
    backup: Backup
    target: RecoveryTarget
    scratch: Path
    bindir: Path
    say: Say


def prepare(
    catalog: Catalog, settings: Settings, name: str, target: RecoveryTarget, backup_id: str | None
) -> tuple[Cluster, Backup, Path, Path]:
    """Step 1: the cluster, the backup the drill restores, the drill folder, the bindir."""
    from pgharbor.pg.local import find_bindir
    from pgharbor.restore.plan import plan_restore

    if os.geteuid() == 0:
        raise UsageError(
            "drill run must not run as root: it starts PostgreSQL as the OS user running it",
            hint="runuser -u postgres -- pgharbor drill run …",
        )
    cluster = catalog.cluster(name)
    places = [p for p in catalog.placements(name) if p.active]
    chosen = plan_restore(catalog, settings, cluster, places, target, backup_id).backup
    folder = drill_dir(settings)
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o700)
    check_space(folder, chosen, cluster.wal_segment_size)
    return cluster, chosen, folder, find_bindir(cluster.version_num // 10000)


def run_drill(
    catalog: Catalog,
    settings: Settings,
    name: str,
    target: RecoveryTarget,
    *,
    backup_id: str | None = None,
    keep: bool = False,
    say: Say = lambda s: None,
) -> DrillResult:
    cluster, chosen, folder, bindir = prepare(catalog, settings, name, target, backup_id)
    repo = DrillRepo(catalog)
    drill_id = repo.begin(cluster.id, chosen.id, target.describe(), os.getpid())
    result = DrillResult(drill_id, name, chosen.id, target.describe())
    started = time.monotonic()
    with _heartbeat(repo, drill_id):
        if BackupRepo(catalog).get(name, chosen.id).status != "ok":
            result.error = f"backup {chosen.id} is being expired or deleted: not drilled"
        else:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            scratch = folder / f"{name}-{drill_id}-{stamp}"
            try:
                scratch.mkdir(mode=0o700)
            except OSError as exc:
                result.error = f"cannot make the scratch folder {scratch}: {exc.strerror}"
            else:
                job = _Job(catalog, settings, cluster, chosen, target, scratch, bindir, say)
                _drill(job, result)
                if result.ok and not keep:
                    shutil.rmtree(scratch, ignore_errors=True)
                else:
                    result.scratch = str(scratch)
    result.total_s = round(time.monotonic() - started, 3)
    repo.finish(
        drill_id,
        result.ok,
        result.checks,
        restore_s=result.restore_s,
        recovery_s=result.recovery_s,
        total_s=result.total_s,
        wal_segments=result.wal_segments,
        bytes_restored=result.bytes_restored,
        reached_lsn=result.reached_lsn,
        error=_first_error(result),
        scratch=result.scratch,
    )
    return result


def _timed(result: DrillResult, fn: Callable[..., CheckOutcome | None], *args: Any) -> bool:
    """Run one check, note its time; False when it failed."""
    t0 = time.monotonic()
    outcome = fn(*args)
    if outcome is None:
        return True
    outcome = replace(outcome, seconds=round(time.monotonic() - t0, 3))
    result.checks.append(outcome)
    return outcome.ok is not False


def _first_error(r: DrillResult) -> str | None:
    if r.error:
        return r.error
    bad = [c for c in r.checks if c.ok is False]
    return f"check {bad[0].name} failed: {bad[0].detail}" if bad else None


def _drill(job: _Job, result: DrillResult) -> None:
    """Steps 3 and 4; the first error ends the drill (recorded in ``result``)."""
    from pgharbor.restore.restore import Options, restore

    pgdata = job.scratch / "data"
    server = ScratchServer(job.bindir, pgdata, job.scratch, _user(job.cluster))
    try:
        t0 = time.monotonic()
        faultpoint.point("drill.before_restore")
        job.say(f"drill {result.id}: restoring backup {job.backup.id} into {pgdata}")
        r = restore(
            job.catalog,
            job.settings,
            job.cluster.name,
            pgdata,
            job.target,
            Options(backup_id=job.backup.id, archive_mode="off"),
            say=job.say,
        )
        result.bytes_restored = r.bytes_written
        result.restore_s = round(time.monotonic() - t0, 3)
        if not _timed(result, checks.verifybackup, job.bindir, pgdata):
            return
        faultpoint.point("drill.restored")
        archived = checks.archived_segments(job.catalog, job.cluster)
        t1 = time.monotonic()
        server.start()
        server.wait_promoted(job.settings.drill_timeout)
        result.recovery_s = round(time.monotonic() - t1, 3)
        faultpoint.point("drill.promoted")
        _check(job, server, result, archived)
    except (PgharborError, OSError) as exc:
        result.error = exc.message if isinstance(exc, PgharborError) else str(exc)
    finally:
        server.stop()


def _check(
    job: _Job, server: ScratchServer, result: DrillResult, archived: dict[int, set[int]]
) -> None:
    if not _timed(result, checks.connect, server):
        return
    reached = server.reached()
    if reached is not None:
        result.reached_lsn = reached[1]
        size = job.cluster.wal_segment_size
        start = lsn_segno(parse_lsn(job.backup.start_lsn or "0/0"), size)
        result.wal_segments = lsn_segno(parse_lsn(reached[1]), size) - start + 1
    _timed(result, checks.recovery_point, archived, job.cluster, job.target, reached, server)
    _timed(result, checks.amcheck, server)
    sql = job.settings.cluster_options(job.cluster.name).get("drill_sql_file")
    _timed(result, checks.sql_file, server, sql)
