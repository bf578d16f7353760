"""A cluster's backups as a person reviews them: each backup with its hold and the
retention rules that keep it (from expire's dry run: what the next expire would do)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgharbor.backup.expire import ExpireRun
from pgharbor.catalog.backups import Backup
from pgharbor.catalog.repo import now
from pgharbor.catalog.retention import RetentionRepo
from pgharbor.domain.retention import Policy
from pgharbor.errors import NotFound, PgharborError
from pgharbor.services import backups, retention
from pgharbor.services.context import Services
from pgharbor.services.retention import HoldView


@dataclass(frozen=True)
class BackupEntry:
    backup: Backup
    hold: HoldView | None  # an active hold
    kept_by: list[str]  # the rules that keep it (empty: the next expire deletes it)
    next_expire: str  # "keep (...)", "delete", or "" when the plan is not known


@dataclass(frozen=True)
class BackupInventory:
    cluster: str
    backups: list[BackupEntry]
    policy: Policy | None  # the retention in force (None: the plan is not known)
    notes: list[str] = field(default_factory=list)  # why the plan is not known, ...


def _plan(svc: Services, cluster: str) -> tuple[ExpireRun | None, list[str]]:
    try:
        run = retention.expire(svc, cluster, dry_run=True).runs[0]
    except PgharborError as exc:
        return None, [f"the retention plan is not known: {exc.message}"]
    return run, [*run.refusals, *run.guards, *run.notes]


def backup_inventory(svc: Services, cluster: str) -> BackupInventory:
    c = svc.catalog.cluster(cluster)
    items = backups.list_backups(svc, cluster)
    holds = RetentionRepo(svc.catalog).holds(c.id)
    at = now()
    run, notes = _plan(svc, cluster)
    verdicts = {v.id: v for v in run.backups} if run else {}
    out = []
    for b in items:
        h = holds.get(b.id)
        hv = None
        if h is not None and (h.until is None or h.until > at):
            hv = HoldView(cluster, b.id, True, h.until, h.reason)
        v = verdicts.get(b.id)
        out.append(BackupEntry(b, hv, list(v.rules) if v else [], v.action if v else ""))
    return BackupInventory(cluster, out, run.policy if run else None, notes)


def backup_entry(svc: Services, cluster: str, backup_id: str) -> BackupEntry:
    found = backups.show(svc, cluster, backup_id)
    for e in backup_inventory(svc, cluster).backups:
        if e.backup.id == found.id:
            return e
    raise NotFound(f"no backup {backup_id} of {cluster}")  # pragma: no cover
