"""One tick of the schedules: every due fire of every cluster becomes one job row.

Any number of nodes tick at once: a fire is one row, unique per (schedule, cluster,
fire time), so the first node to insert it wins and the others insert nothing. A fire
whose previous run of the same cluster and kind is still queued or running is recorded
``skipped`` (runs are never stacked); fires found later than the grace period (every
node was down) are recorded ``missed``, the newest within it runs once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pgharbor.catalog.jobs import DEFAULT, JobRepo, ScheduleRow
from pgharbor.domain import cron

log = logging.getLogger(__name__)
KINDS = ("backup", "expire", "verify", "drill")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class TickResult:
    queued: list[int] = field(default_factory=list)
    skipped: int = 0
    missed: int = 0
    errors: list[str] = field(default_factory=list)


def effective(schedules: list[ScheduleRow], cluster_id: str) -> dict[str, ScheduleRow]:
    """The schedule in force for each kind of one cluster (its own, else the default)."""
    out = {s.kind: s for s in schedules if s.scope == DEFAULT}
    out.update({s.kind: s for s in schedules if s.scope == cluster_id})
    return {k: s for k, s in out.items() if s.enabled}


def tick(repo: JobRepo, grace: timedelta) -> TickResult:
    res = TickResult()
    schedules = repo.schedules()
    if not schedules:
        return res
    now = repo.db_now()
    last = repo.last_fires(now - cron.LOOK_BACK)  # due() looks no further back
    active = repo.active_pairs()
    fires: list[tuple[int, str, str, datetime, str]] = []
    for c in repo.clusters():
        for kind, s in effective(schedules, c.id).items():
            try:
                since = max(last.get((s.id, c.id), EPOCH), s.modified_at, c.created_at)
                due = cron.due(s.cron, s.timezone, since, now, grace)
            except Exception as exc:  # one cluster's trouble never stops the others
                res.errors.append(f"{c.name} {kind}: {exc}")
                log.error("schedule %s %s: %s", c.name, kind, exc)
                continue
            fires += [(s.id, c.id, kind, t, "missed") for t in due.missed]
            if due.run is not None:
                state = "skipped" if (c.id, kind) in active else "queued"
                fires.append((s.id, c.id, kind, due.run, state))
    inserted = set(repo.record_fires(fires))
    if not inserted:
        return res
    for row in repo.list(job_ids=sorted(inserted), limit=len(inserted)):
        if row.state == "queued":
            res.queued.append(row.id)
        elif row.state == "skipped":
            res.skipped += 1
            log.info(
                "%s %s: fire %s skipped, the previous run is not done",
                row.cluster,
                row.kind,
                row.fire_time,
            )
        else:
            res.missed += 1
            log.debug("%s %s: the fire of %s was missed", row.cluster, row.kind, row.fire_time)
    if res.missed:
        log.warning("%d fire(s) were missed (no node was up within scheduler_grace)", res.missed)
    return res
