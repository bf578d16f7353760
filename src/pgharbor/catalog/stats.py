"""Aggregates the metrics need, each one query: stored bytes per (cluster, target, kind),
finished jobs per (cluster, kind, state), each (cluster, kind)'s latest finished job and
its run of failures, and the scheduler nodes' heartbeats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from pgharbor.catalog.repo import Catalog, aware
from pgharbor.catalog.schema import (
    backup_copies,
    backups,
    clusters,
    jobs,
    nodes,
    targets,
    wal_copies,
)

FINISHED = ("done", "failed", "skipped", "missed")


@dataclass(frozen=True)
class LastJob:
    cluster: str
    kind: str
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    last_done_at: datetime | None
    failures: int  # failed runs since the last done one (0: the latest run was done)


def stored_bytes(cat: Catalog) -> list[tuple[str, str, str, int]]:
    """(cluster, target, "wal" or "backup", bytes) of the copies that are ok."""
    wal = (
        sa.select(
            clusters.c.name,
            targets.c.name,
            sa.func.coalesce(
                sa.func.sum(sa.func.coalesce(wal_copies.c.stored_size, wal_copies.c.size)), 0
            ),
        )
        .join(clusters, clusters.c.id == wal_copies.c.cluster_id)
        .join(targets, targets.c.id == wal_copies.c.target_id)
        .where(wal_copies.c.status == "ok")
        .group_by(clusters.c.name, targets.c.name)
    )
    bk = (
        sa.select(clusters.c.name, targets.c.name, sa.func.sum(backup_copies.c.stored_bytes))
        .join(backups, backups.c.id == backup_copies.c.backup_id)
        .join(clusters, clusters.c.id == backups.c.cluster_id)
        .join(targets, targets.c.id == backup_copies.c.target_id)
        .where(backup_copies.c.status == "ok")
        .group_by(clusters.c.name, targets.c.name)
    )
    with cat.engine.connect() as conn:
        out = [(c, t, "wal", int(n or 0)) for c, t, n in conn.execute(wal)]
        out += [(c, t, "backup", int(n or 0)) for c, t, n in conn.execute(bk)]
    return out


def job_counts(cat: Catalog) -> list[tuple[str, str, str, int]]:
    """(cluster, kind, state, count) of finished jobs."""
    q = (
        sa.select(clusters.c.name, jobs.c.kind, jobs.c.state, sa.func.count())
        .join(clusters, clusters.c.id == jobs.c.cluster_id)
        .where(jobs.c.state.in_(FINISHED))
        .group_by(clusters.c.name, jobs.c.kind, jobs.c.state)
    )
    with cat.engine.connect() as conn:
        return [(c, k, s, int(n)) for c, k, s, n in conn.execute(q)]


def last_jobs(cat: Catalog, per_pair: int = 20) -> list[LastJob]:
    """The latest finished run (done or failed) of each (cluster, kind), with how many
    failed runs follow the last done one among the newest ``per_pair``."""
    q = (
        sa.select(clusters.c.name, jobs.c.kind, jobs.c.state, jobs.c.started_at, jobs.c.finished_at)
        .join(clusters, clusters.c.id == jobs.c.cluster_id)
        .where(jobs.c.state.in_(("done", "failed")))
        .order_by(jobs.c.id.desc())
        .limit(2000)
    )
    seen: dict[tuple[str, str], list[tuple[str, datetime | None, datetime | None]]] = {}
    with cat.engine.connect() as conn:
        for c, k, s, st, fin in conn.execute(q):
            runs = seen.setdefault((c, k), [])
            if len(runs) < per_pair:
                runs.append((s, aware(st) if st else None, aware(fin) if fin else None))
    out = []
    for (c, k), runs in sorted(seen.items()):
        fails = 0
        done_at = None
        for s, _st, fin in runs:
            if s == "done":
                done_at = fin
                break
            fails += 1
        s, st, fin = runs[0]
        out.append(LastJob(c, k, s, st, fin, done_at, fails))
    return out


def node_heartbeats(cat: Catalog) -> list[tuple[str, datetime]]:
    with cat.engine.connect() as conn:
        return [
            (n, aware(t)) for n, t in conn.execute(sa.select(nodes.c.name, nodes.c.heartbeat_at))
        ]
