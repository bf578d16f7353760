"""Jobs: what the scheduler ran, runs and will run (kind, cluster, node, reason, times,
result, error)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgharbor.catalog.jobs import JobRepo, JobRow
from pgharbor.errors import UsageError
from pgharbor.services.context import Services

STATES = ("queued", "running", "done", "failed", "skipped", "missed")


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    cluster: str
    reason: str  # scheduled, requested, retry
    state: str
    node: str | None
    fire_time: datetime | None  # scheduled jobs: the fire they run
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    result: Any
    error: str | None


def _view(r: JobRow) -> JobView:
    return JobView(
        r.id,
        r.kind,
        r.cluster,
        r.reason,
        r.state,
        r.node,
        r.fire_time,
        r.queued_at,
        r.started_at,
        r.finished_at,
        r.attempts,
        r.result,
        r.error,
    )


def list_jobs(
    svc: Services, *, cluster: str | None = None, state: str | None = None, limit: int = 200
) -> list[JobView]:
    """The newest jobs first."""
    if state is not None and state not in STATES:
        raise UsageError(f"unknown job state {state!r}", hint=f"one of {', '.join(STATES)}")
    cid = svc.catalog.cluster(cluster).id if cluster is not None else None
    rows = JobRepo(svc.catalog).list(cluster_id=cid, state=state, limit=limit)
    return [_view(r) for r in rows]


def show_job(svc: Services, job_id: int) -> JobView:
    return _view(JobRepo(svc.catalog).get(job_id))
