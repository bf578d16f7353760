"""Data of the backup, targets, schedules and jobs pages."""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from pgharbor.catalog.backups import Backup
from pgharbor.catalog.drills import DrillRepo
from pgharbor.catalog.retention import HoldRow, RetentionRepo
from pgharbor.catalog.schema import backup_copies, clusters, placements, targets
from pgharbor.model import Target
from pgharbor.services import backups as backup_service
from pgharbor.services import health
from pgharbor.services.context import Services


@dataclass(frozen=True)
class CopyRow:
    target: str
    status: str
    stored_bytes: int


@dataclass(frozen=True)
class FileRow:
    path: str
    type: str
    size: int


@dataclass
class BackupPage:
    backup: Backup
    copies: list[CopyRow]
    hold: HoldRow | None
    drilled_at: datetime | None
    restore_command: str
    files: list[FileRow] = field(default_factory=list)
    files_total: int = 0
    files_error: str | None = None  # the manifest could not be read here (and why)


MAX_FILES = 500  # listed on the page (the total is always given)


def _manifest_files(
    svc: Services, b: Backup, ok_targets: list[str]
) -> tuple[list[FileRow], int, str | None]:
    """The files of the backup's manifest, read from the first target holding it; the
    keys are the ones this host has (an encrypted manifest it cannot open: said so)."""
    from pgharbor import access
    from pgharbor.backup.manifest import BackupManifest
    from pgharbor.errors import PgharborError
    from pgharbor.storage.factory import open_storage
    from pgharbor.storage.layout import manifest_key

    problems = []
    for name in ok_targets:
        try:
            t = svc.catalog.target(name)
            storage = open_storage(t.url, svc.settings.target_options(name))
            keys = access.keyring(svc.settings, b.cluster, name)
            m = BackupManifest.unseal(storage.get(manifest_key(b.cluster, b.id)), keys)
        except PgharborError as exc:
            problems.append(f"{name}: {exc.message}")
            continue
        except Exception as exc:  # an unreachable target's own error type
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        every = m.all_files()
        rows = [FileRow(f.path, f.type, f.size) for f in every[:MAX_FILES]]
        return rows, len(every), None
    return [], 0, "; ".join(problems) or "no target holds a good copy"


def restore_command(b: Backup) -> str:
    return (
        f"pgharbor restore {shlex.quote(b.cluster)} --backup {shlex.quote(b.id)} "
        "--pgdata /path/to/new/pgdata"
    )


def backup_page(svc: Services, cluster: str, backup_id: str, *, files: bool = True) -> BackupPage:
    b = backup_service.show(svc, cluster, backup_id)
    c = svc.catalog.cluster(cluster)
    q = (
        sa.select(targets.c.name, backup_copies.c.status, backup_copies.c.stored_bytes)
        .join(targets, targets.c.id == backup_copies.c.target_id)
        .where(backup_copies.c.backup_id == b.id)
        .order_by(targets.c.name)
    )
    with svc.catalog.engine.connect() as conn:
        copies = [CopyRow(n, s, int(by or 0)) for n, s, by in conn.execute(q)]
    hold = RetentionRepo(svc.catalog).holds(c.id).get(b.id)
    page = BackupPage(
        b, copies, hold, DrillRepo(svc.catalog).drilled_at(c.id).get(b.id), restore_command(b)
    )
    if files:
        ok = [x.target for x in copies if x.status == "ok"]
        page.files, page.files_total, page.files_error = _manifest_files(svc, b, ok)
    return page


@dataclass(frozen=True)
class TargetRow:
    target: Target
    clusters: list[str]
    active_placements: int
    check: health.TargetCheck | None

    @property
    def free_pct(self) -> float | None:
        c = self.check
        if c is None or c.free_bytes is None or not c.total_bytes:
            return None
        return round(100.0 * c.free_bytes / c.total_bytes, 1)


class ProbeCache:
    """Target probes (reachable, writable, free space) kept ``ttl`` seconds: a page load
    does not write a probe object to every target each time."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self.lock = threading.Lock()
        self.found: dict[str, tuple[float, health.TargetCheck]] = {}

    def get(self, svc: Services, t: Target) -> health.TargetCheck:
        with self.lock:
            hit = self.found.get(t.name)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
        r = health.check_target(svc, t)
        with self.lock:
            self.found[t.name] = (time.monotonic(), r)
        return r


def targets_page(svc: Services, probes: ProbeCache | None) -> list[TargetRow]:
    from pgharbor.services.targets import shown

    q = (
        sa.select(placements.c.target_id, clusters.c.name, placements.c.active)
        .join(clusters, clusters.c.id == placements.c.cluster_id)
        .order_by(clusters.c.name)
    )
    with svc.catalog.engine.connect() as conn:
        held: dict[str, list[tuple[str, bool]]] = {}
        for tid, name, active in conn.execute(q):
            held.setdefault(tid, []).append((name, bool(active)))
    out = []
    for t in svc.catalog.targets():
        where = held.get(t.id, [])
        check = probes.get(svc, t) if probes is not None else None
        out.append(TargetRow(shown(t), [n for n, _ in where], sum(a for _, a in where), check))
    return out
