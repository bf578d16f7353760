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
    last = repo.last_fires()
    active = repo.active_pairs()
    for c in repo.clusters():
        for kind, s in effective(schedules, c.id).items():
            try:
                since = max(last.get((s.id, c.id), EPOCH), s.modified_at, c.created_at)
                due = cron.due(s.cron, s.timezone, since, now, grace)
                for t in due.missed:
                    if repo.record_fire(s.id, c.id, kind, t, "missed") is not None:
                        res.missed += 1
                        log.warning("%s %s: the fire of %s was missed", c.name, kind, t)
                if due.run is None:
                    continue
                state = "skipped" if (c.id, kind) in active else "queued"
                job = repo.record_fire(s.id, c.id, kind, due.run, state)
                if job is None:
                    continue  # another node recorded this fire
                if state == "queued":
                    active.add((c.id, kind))
                    res.queued.append(job)
                else:
                    res.skipped += 1
                    log.info(
                        "%s %s: fire %s skipped, the previous run is not done",
                        c.name,
                        kind,
                        due.run,
                    )
            except Exception as exc:  # one cluster's trouble never stops the others
                res.errors.append(f"{c.name} {kind}: {exc}")
                log.error("schedule %s %s: %s", c.name, kind, exc)
    return res
