"""Retention: the policy (fleet default and per-cluster), holds on backups, and expire
(see backup.expire for how a run is carried out, domain.retention for the rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pgharbor.backup.expire import ExpireRun, effective_policy, expire_cluster
from pgharbor.backup.lease import refuse_root
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.retention import DEFAULT, RetentionRepo
from pgharbor.domain.pitr import parse_time
from pgharbor.domain.retention import Policy, format_duration, parse_duration
from pgharbor.errors import GuardRefused, NotFound, PgharborError, UsageError
from pgharbor.services.context import Services

OFF = "off"


@dataclass(frozen=True)
class PolicyView:
    scope: str  # "default" or a cluster name
    keep_last: int | None  # set here (None: not set, falls back; 0: off)
    recovery_window: str | None  # e.g. "7d" ("off": turned off here)
    min_backups: int | None
    effective: Policy | None  # a cluster's policy in force (None for the default)

    @property
    def ok(self) -> bool:
        return self.effective is None or not self.effective.empty


@dataclass(frozen=True)
class HoldView:
    cluster: str
    backup_id: str
    held: bool
    until: datetime | None = None
    reason: str = ""


@dataclass
class ExpireReport:
    runs: list[ExpireRun]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)


def _scope(svc: Services, cluster: str | None) -> tuple[str, str | None]:
    if cluster is None:
        return DEFAULT, None
    c = svc.catalog.cluster(cluster)
    return c.id, c.id


def show_policy(svc: Services, cluster: str | None) -> PolicyView:
    """The settings of one scope (a cluster: with the policy in force)."""
    repo = RetentionRepo(svc.catalog)
    scope, cid = _scope(svc, cluster)
    row = repo.policy(scope)
    window = None
    if row.recovery_window is not None:
        window = format_duration(row.recovery_window) if row.recovery_window else OFF
    effective = effective_policy(repo, cid) if cid else None
    return PolicyView(cluster or DEFAULT, row.keep_last, window, row.min_backups, effective)


def set_policy(
    svc: Services,
    cluster: str | None,
    *,
    keep_last: int | None = None,
    recovery_window: str | None = None,
    min_backups: int | None = None,
) -> PolicyView:
    """Set the given fields of the fleet default (cluster None) or of one cluster."""
    values: dict[str, object] = {}
    if keep_last is not None:
        if keep_last < 0:
            raise UsageError("--keep-last must be 0 (off) or more")
        values["keep_last"] = keep_last
    if recovery_window is not None:
        window = timedelta(0) if recovery_window == OFF else parse_duration(recovery_window)
        values["recovery_window_s"] = int(window.total_seconds())
    if min_backups is not None:
        if min_backups < 1:
            raise UsageError("--min-backups must be at least 1: the newest backup is never expired")
        values["min_backups"] = min_backups
    if not values:
        raise UsageError(
            "nothing to set", hint="give --keep-last, --recovery-window or --min-backups"
        )
    scope, cid = _scope(svc, cluster)
    RetentionRepo(svc.catalog).set_policy(scope, cid, values)
    return show_policy(svc, cluster)


def hold(
    svc: Services, cluster: str, backup_id: str, *, reason: str, until: str | None = None
) -> HoldView:
    """Pin a usable backup: every expire keeps it (until ``until``, when given)."""
    if not reason.strip():
        raise UsageError("a hold needs a --reason")
    when = parse_time(until) if until else None  # a time zone is required
    b = BackupRepo(svc.catalog).get(cluster, backup_id)
    RetentionRepo(svc.catalog).hold(b.id, when, reason.strip())
    return HoldView(cluster, b.id, True, when, reason.strip())


def release(svc: Services, cluster: str, backup_id: str) -> HoldView:
    b = BackupRepo(svc.catalog).get(cluster, backup_id)
    if not RetentionRepo(svc.catalog).release(b.id):
        raise NotFound(f"backup {b.id} of {cluster} is not held")
    return HoldView(cluster, b.id, False)


def expire(
    svc: Services,
    cluster: str | None,
    *,
    dry_run: bool = False,
    force: bool = False,
    in_use: frozenset[str] = frozenset(),
) -> ExpireReport:
    """Expire one cluster (its errors and refusals raised), or with ``cluster`` None every
    cluster of the fleet (each one's failure reported in its run; the others go on).
    ``in_use``: ids of backups running jobs use (the scheduler passes them): kept."""
    if not dry_run:
        refuse_root("expire")
    if cluster is not None:
        run = expire_cluster(
            svc.catalog, svc.settings, cluster, dry_run=dry_run, force=force, in_use=in_use
        )
        if not dry_run:
            _refuse(run)
        return ExpireReport([run])
    runs = []
    for c in svc.catalog.clusters():
        try:
            run = expire_cluster(
                svc.catalog, svc.settings, c.name, dry_run=dry_run, force=force, in_use=in_use
            )
        except PgharborError as exc:
            run = ExpireRun(c.name, dry_run, Policy(), [], [], [], [], [], [], error=exc.message)
        runs.append(run)
    return ExpireReport(runs)


def _refuse(run: ExpireRun) -> None:
    if run.refusals:
        hint = f"pgharbor retention set {run.cluster} --keep-last N (or --recovery-window D)"
        raise GuardRefused(
            f"expire {run.cluster} refused: {'; '.join(run.refusals)}",
            hint=hint if run.policy.empty else None,
        )
    if run.guards and not run.forced:
        raise GuardRefused(
            f"expire {run.cluster} refused: {'; '.join(run.guards)}; nothing was changed",
            hint="see pgharbor expire --dry-run; --force deletes anyway",
        )
