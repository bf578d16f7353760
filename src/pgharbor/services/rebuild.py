"""The catalog is an index that can be rebuilt: ``catalog rebuild`` reads the
self-describing targets into a new (or empty) catalog — the targets (same ids and
names), the clusters (from their descriptors, services.descriptors), the placements
(priority = position of the URL in the list), every WAL copy, every finished backup and
its copies, and the restore points found in the archived WAL.

Refusals (a non-empty catalog, a URL that is not a target, conflicting descriptors)
come before anything is written (services.rebuild_survey). After that the rebuild
finishes what it can: an object it cannot read is skipped and reported, never
invented (services.rebuild_objects); the result says so and the command exits non-zero.
The DSN is never on a target: every rebuilt cluster needs ``cluster set NAME --dsn``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pgharbor.access import keyring
from pgharbor.backup.manifest import BackupManifest
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.catalog.restore_points import RestorePointRepo
from pgharbor.errors import Conflict, PgharborError
from pgharbor.services.catalog import init
from pgharbor.services.context import Services
from pgharbor.services.rebuild_objects import Found, backup_row, read_backups, read_wal
from pgharbor.services.rebuild_survey import FoundCluster, Survey, survey
from pgharbor.storage.factory import shown_url

log = logging.getLogger(__name__)


@dataclass
class RebuildResult:
    catalog: str  # shown without a password
    targets: list[str] = field(default_factory=list)  # names, in priority order
    clusters: list[str] = field(default_factory=list)
    placements: int = 0
    wal_copies: int = 0
    backups: int = 0
    backup_copies: int = 0
    restore_points: int = 0
    skipped: int = 0  # objects skipped (unreadable, foreign, no key)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    needs_dsn: list[str] = field(default_factory=list)  # pgharbor cluster set NAME --dsn

    @property
    def ok(self) -> bool:
        """Everything the targets hold was read back."""
        return not self.skipped and not self.problems


def _refuse_non_empty(catalog: Catalog) -> None:
    counts = {"target(s)": len(catalog.targets()), "cluster(s)": len(catalog.clusters())}
    held = [f"{n} {what}" for what, n in counts.items() if n]
    if held:
        raise Conflict(
            f"catalog is not empty ({', '.join(held)}): a rebuild fills a new or empty catalog",
            hint="give --catalog a new file or an empty database",
        )


def _fleet(catalog: Catalog, found: Survey, result: RebuildResult) -> None:
    """Targets, clusters and placements, as the markers and descriptors say."""
    for t in found.targets:
        catalog.add_target(t.name, t.url, target_id=t.id)
        result.targets.append(t.name)
    used: set[tuple[str, str, int]] = set()
    for fc in found.clusters:
        c = fc.cluster
        values = {k: v for k, v in c.as_dict().items() if k not in _NOT_STORED}
        if not c.host or (c.idc, c.host, c.port) in used:  # unknown, or moved since
            values["host"] = f"unknown-{c.id[:8]}"
            result.notes.append(f"cluster {c.name}: host not known until cluster set --dsn")
        used.add((c.idc, str(values["host"]), c.port))
        catalog.add_cluster(values)
        if not c.active:
            catalog.update_cluster(c.name, active=False)
        for t in fc.targets:
            catalog.add_placement(c.name, t.name, t.priority)
            result.placements += 1
        result.clusters.append(c.name)
        result.needs_dsn.append(c.name)


_NOT_STORED = ("placements", "active", "created_at", "modified_at")


def _objects(svc: Services, fc: FoundCluster, result: RebuildResult) -> None:
    """The cluster's WAL copies and finished backups on each of its targets."""
    c = fc.cluster
    when = datetime.now(UTC).isoformat()
    backups: dict[str, tuple[BackupManifest, dict[str, int]]] = {}
    for t in fc.targets:
        out = Found(t.name)
        try:
            keys = keyring(svc.settings, c.name, t.name)
            read_wal(t.storage, c, t.id, keys, when, out)
            read_backups(t.storage, c, keys, out)
        except PgharborError as exc:  # a key that cannot be loaded, a target gone
            out.skip(f"{c.name} on {t.name}: not read: {exc.message}")
        result.wal_copies += svc.catalog.record_copies(out.wal_rows)
        for backup_id, (m, size) in out.backups.items():
            backups.setdefault(backup_id, (m, {}))[1][t.id] = size
        result.skipped += out.skipped
        result.problems += out.summary(c.name)
        result.notes += out.notes
    repo = BackupRepo(svc.catalog)
    for _, (m, copies) in sorted(backups.items(), key=lambda kv: kv[1][0].start_time):
        repo.add_finished(backup_row(m, next(iter(copies.values()))), copies)
        result.backups += 1
        result.backup_copies += len(copies)


def _restore_points(svc: Services, fc: FoundCluster, result: RebuildResult) -> None:
    from pgharbor.restore.points import scan

    c = svc.catalog.cluster(fc.cluster.name)
    try:
        scan(svc.catalog, svc.settings, c)
    except PgharborError as exc:
        result.problems.append(
            f"restore points of {c.name} not scanned: {exc.message} (pgharbor restore-point "
            f"list {c.name} scans again)"
        )
    result.restore_points += len(RestorePointRepo(svc.catalog).for_cluster(c.id))


def rebuild(svc: Services, urls: list[str], *, restore_points: bool = True) -> RebuildResult:
    """Rebuild the catalog from the targets at ``urls`` (their priority: their order).
    Raises before writing anything when the catalog is not empty or the targets
    contradict each other; otherwise reports what it skipped. With ``restore_points``
    False the WAL is not scanned now (``restore-point list`` does it later)."""
    created = init(svc)  # new: created; old: brought to this schema
    catalog = svc.catalog
    _refuse_non_empty(catalog)
    found = survey(svc.settings, urls)
    result = RebuildResult(created.catalog, problems=list(found.problems))
    result.skipped = len(found.problems)
    try:
        _fleet(catalog, found, result)
        for fc in found.clusters:
            _objects(svc, fc, result)
            if restore_points:
                _restore_points(svc, fc, result)
    finally:
        found.close()
    log.info(
        "rebuilt %s from %s", created.catalog, ", ".join(shown_url(t.url) for t in found.targets)
    )
    return result
