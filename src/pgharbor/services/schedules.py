"""Schedules: the fleet default and per-cluster overrides of each job kind, their next
fire times, and running a kind now (``trigger``: a requested job; the schedule does not
move). Cron and time zones are checked by domain.cron."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pgharbor.catalog.jobs import DEFAULT, JobRepo
from pgharbor.domain import cron
from pgharbor.errors import UsageError
from pgharbor.services.context import Services
from pgharbor.services.jobs import JobView, show_job

KINDS = ("backup", "expire", "verify", "drill")
OFF = "off"


@dataclass(frozen=True)
class ScheduleView:
    scope: str  # "default" or a cluster name
    kind: str
    cron: str  # as set ("off" when turned off there)
    timezone: str
    enabled: bool
    next_fires: list[datetime]  # the next three (UTC), none when off


@dataclass(frozen=True)
class ScheduleList:
    now: datetime  # the catalog's time the fires are counted from
    schedules: list[ScheduleView]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"unknown job kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    return kind


def set_schedule(
    svc: Services, cluster: str | None, kind: str, expr: str, *, timezone: str = "UTC"
) -> ScheduleView:
    """Set (or turn ``off``) the schedule of ``kind`` for one cluster or (cluster None)
    the fleet default. A cluster's own schedule, even ``off``, overrides the default."""
    check_kind(kind)
    cron.zone(timezone)
    enabled = expr.strip().lower() != OFF
    text = cron.parse(expr) if enabled else OFF
    scope, cid = DEFAULT, None
    if cluster is not None:
        cid = svc.catalog.cluster(cluster).id
        scope = cid
    repo = JobRepo(svc.catalog)
    repo.set_schedule(scope, cid, kind, text, timezone, enabled)
    shown = cluster or DEFAULT
    for v in list_schedules(svc).schedules:
        if v.scope == shown and v.kind == kind:
            return v
    raise AssertionError("the schedule just set is not listed")  # pragma: no cover


def list_schedules(svc: Services) -> ScheduleList:
    repo = JobRepo(svc.catalog)
    names = {c.id: c.name for c in repo.clusters()}
    now = repo.db_now()
    out = []
    for s in repo.schedules():
        scope = DEFAULT if s.scope == DEFAULT else names.get(s.scope, s.scope)
        fires = cron.next_fires(s.cron, s.timezone, now) if s.enabled else []
        out.append(ScheduleView(scope, s.kind, s.cron, s.timezone, s.enabled, fires))
    out.sort(key=lambda v: (v.scope != DEFAULT, v.scope, KINDS.index(v.kind)))
    return ScheduleList(now, out)


def trigger(svc: Services, cluster: str, kind: str) -> JobView:
    """Queue a run of ``kind`` for ``cluster`` now (reason requested)."""
    check_kind(kind)
    c = svc.catalog.cluster(cluster)
    return show_job(svc, JobRepo(svc.catalog).request(c.id, kind))
