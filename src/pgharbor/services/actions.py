"""The actions of the API and the dashboard, each written to the event log with who did
it: long work (backup, verify, expire, drill) is queued as a job for the scheduler nodes
(``trigger``: nothing runs in the caller); quick catalog changes (hold/release a backup,
pause/resume a schedule) are done here. ``preview_expire`` is expire's dry run (it
changes nothing, so it is no audited action)."""

from __future__ import annotations

from pgharbor.backup.expire import ExpireRun
from pgharbor.catalog.jobs import DEFAULT, JobRepo
from pgharbor.errors import NotFound, UsageError
from pgharbor.services import retention, schedules
from pgharbor.services.audit import Actor, audit
from pgharbor.services.context import Services
from pgharbor.services.jobs import JobView
from pgharbor.services.retention import HoldView
from pgharbor.services.schedules import ScheduleView


def trigger(svc: Services, actor: Actor, cluster: str, kind: str) -> JobView:
    """Queue ``kind`` (backup, verify, expire, drill) for ``cluster`` now."""
    job = schedules.trigger(svc, cluster, kind)
    c = svc.catalog.cluster(cluster)
    audit(svc, actor, kind, f"{kind} of {cluster} requested: job {job.id}", cluster_id=c.id)
    return job


def preview_expire(svc: Services, cluster: str) -> ExpireRun:
    """What an expire of ``cluster`` would delete and keep (and the rule keeping each)."""
    return retention.expire(svc, cluster, dry_run=True).runs[0]


def hold(
    svc: Services,
    actor: Actor,
    cluster: str,
    backup_id: str,
    reason: str,
    until: str | None = None,
) -> HoldView:
    v = retention.hold(svc, cluster, backup_id, reason=reason, until=until)
    ends = f" until {v.until.isoformat()}" if v.until else ""
    audit(
        svc,
        actor,
        "hold",
        f"backup {v.backup_id} of {cluster} held{ends}: {v.reason}",
        cluster_id=svc.catalog.cluster(cluster).id,
    )
    return v


def release(svc: Services, actor: Actor, cluster: str, backup_id: str) -> HoldView:
    v = retention.release(svc, cluster, backup_id)
    audit(
        svc,
        actor,
        "release",
        f"backup {v.backup_id} of {cluster} released",
        cluster_id=svc.catalog.cluster(cluster).id,
    )
    return v


def _set_enabled(
    svc: Services, actor: Actor, cluster: str | None, kind: str, enabled: bool
) -> ScheduleView:
    schedules.check_kind(kind)
    shown = cluster or DEFAULT
    current = next(
        (v for v in schedules.list_schedules(svc).schedules if v.scope == shown and v.kind == kind),
        None,
    )
    if current is None:
        raise NotFound(
            f"no {kind} schedule for {shown}",
            hint=f"pgharbor schedule set {cluster or '--default'} {kind} CRON",
        )
    if current.cron == schedules.OFF:
        raise UsageError(
            f"the {kind} schedule of {shown} is turned off, not paused",
            hint=f"give it a cron: pgharbor schedule set {cluster or '--default'} {kind} CRON",
        )
    scope, cid = DEFAULT, None
    if cluster is not None:
        cid = svc.catalog.cluster(cluster).id
        scope = cid
    JobRepo(svc.catalog).set_schedule(scope, cid, kind, current.cron, current.timezone, enabled)
    word = "resumed" if enabled else "paused"
    audit(svc, actor, "schedule", f"{kind} schedule of {shown} {word}", cluster_id=cid)
    return next(
        v for v in schedules.list_schedules(svc).schedules if v.scope == shown and v.kind == kind
    )


def pause_schedule(svc: Services, actor: Actor, cluster: str | None, kind: str) -> ScheduleView:
    """Stop ``kind``'s schedule of ``cluster`` (None: the fleet default) from firing; its
    cron is kept for ``resume_schedule``."""
    return _set_enabled(svc, actor, cluster, kind, False)


def resume_schedule(svc: Services, actor: Actor, cluster: str | None, kind: str) -> ScheduleView:
    return _set_enabled(svc, actor, cluster, kind, True)
