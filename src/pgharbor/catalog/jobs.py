"""The scheduler's catalog records: schedules, jobs (with leases and fencing tokens) and
scheduler nodes. Every time a decision depends on is the catalog's (``now()`` on
PostgreSQL; on SQLite, a single node, the clock of the one host that runs it).

Claims are serialised on PostgreSQL by a transaction-level advisory lock (released with
the transaction: nothing stacks, nothing outlives a dead connection) and take the job row
with ``FOR UPDATE SKIP LOCKED``; the limits (at most one job writing a cluster's backups,
at most N backups in the fleet) are conditions of the claim query itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pgharbor.catalog.repo import Catalog, aware
from pgharbor.catalog.schema import clusters, jobs, nodes, schedules
from pgharbor.errors import Conflict, NotFound

DEFAULT = "default"  # the scope of the fleet default schedules
WRITERS = ("backup", "expire")  # kinds that write a cluster's backups: one at a time
ACTIVE = ("queued", "running")
CLAIM_LOCK = 0x70676861  # pg_advisory_xact_lock key of the claim step ("pgha")


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    scope: str
    cluster_id: str | None
    kind: str
    cron: str
    timezone: str
    enabled: bool
    modified_at: datetime


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    cluster_id: str
    cluster: str
    schedule_id: int | None
    fire_time: datetime | None
    reason: str
    state: str
    node: str | None
    lease_until: datetime | None
    token: int
    attempts: int
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: str | None


@dataclass(frozen=True)
class ClusterRef:
    id: str
    name: str
    created_at: datetime


def _opt(dt: datetime | None) -> datetime | None:
    return aware(dt) if dt is not None else None


def _job(r: Any) -> JobRow:
    return JobRow(
        r["id"],
        r["kind"],
        r["cluster_id"],
        r["cluster"],
        r["schedule_id"],
        _opt(r["fire_time"]),
        r["reason"],
        r["state"],
        r["node"],
        _opt(r["lease_until"]),
        int(r["token"]),
        int(r["attempts"]),
        aware(r["queued_at"]),
        _opt(r["started_at"]),
        _opt(r["finished_at"]),
        json.loads(r["result"]) if r["result"] else None,
        r["error"],
    )


def _insert(conn: Connection) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING is spelt the same by both dialects."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


class JobRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog
        self.pg = catalog.engine.dialect.name == "postgresql"

    def db_now(self, conn: Connection | None = None) -> datetime:
        """The catalog's time (the transaction's on PostgreSQL)."""
        if not self.pg:
            return datetime.now(UTC)
        if conn is None:
            with self.cat.engine.connect() as c:
                return self.db_now(c)
        return aware(conn.execute(sa.text("SELECT now()")).scalar_one())

    # -- schedules ---------------------------------------------------------------
    def set_schedule(
        self, scope: str, cluster_id: str | None, kind: str, cron: str, tz: str, enabled: bool
    ) -> None:
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            values = {"cron": cron, "timezone": tz, "enabled": enabled, "modified_at": t}
            done = conn.execute(
                schedules.update()
                .where(schedules.c.scope == scope, schedules.c.kind == kind)
                .values(**values)
            )
            if not done.rowcount:
                conn.execute(
                    schedules.insert().values(
                        scope=scope, cluster_id=cluster_id, kind=kind, created_at=t, **values
                    )
                )

    def schedules(self) -> list[ScheduleRow]:
        q = sa.select(schedules).order_by(schedules.c.scope, schedules.c.kind)
        with self.cat.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            ScheduleRow(
                r["id"],
                r["scope"],
                r["cluster_id"],
                r["kind"],
                r["cron"],
                r["timezone"],
                bool(r["enabled"]),
                aware(r["modified_at"]),
            )
            for r in rows
        ]

    def clusters(self) -> list[ClusterRef]:
        q = (
            sa.select(clusters.c.id, clusters.c.name, clusters.c.created_at)
            .where(clusters.c.active)
            .order_by(clusters.c.name)
        )
        with self.cat.engine.connect() as conn:
            return [ClusterRef(r[0], r[1], aware(r[2])) for r in conn.execute(q)]

    def last_fires(self, after: datetime) -> dict[tuple[int, str], datetime]:
        """The newest recorded fire after ``after`` of each (schedule, cluster)."""
        q = (
            sa.select(jobs.c.schedule_id, jobs.c.cluster_id, sa.func.max(jobs.c.fire_time))
            .where(jobs.c.schedule_id.is_not(None), jobs.c.fire_time > after)
            .group_by(jobs.c.schedule_id, jobs.c.cluster_id)
        )
        with self.cat.engine.connect() as conn:
            return {(r[0], r[1]): aware(r[2]) for r in conn.execute(q)}

    def active_pairs(self) -> set[tuple[str, str]]:
        """(cluster id, kind) of every queued or running job."""
        q = sa.select(jobs.c.cluster_id, jobs.c.kind).where(jobs.c.state.in_(ACTIVE)).distinct()
        with self.cat.engine.connect() as conn:
            return {(r[0], r[1]) for r in conn.execute(q)}

    # -- jobs --------------------------------------------------------------------
    def record_fires(self, fires: list[tuple[int, str, str, datetime, str]]) -> list[int]:
        """Rows for scheduled fires, each (schedule id, cluster id, kind, fire time,
        state: queued, skipped or missed), in one transaction. A fire another node
        recorded first is left alone (the unique (schedule, cluster, fire time)). Returns
        the ids of the rows this call inserted."""
        if not fires:
            return []
        ids: list[int] = []
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            for i in range(0, len(fires), 500):
                rows = [
                    {
                        "kind": kind,
                        "cluster_id": cid,
                        "schedule_id": sid,
                        "fire_time": fire,
                        "reason": "scheduled",
                        "state": state,
                        "queued_at": t,
                        "finished_at": None if state == "queued" else t,
                    }
                    for sid, cid, kind, fire, state in fires[i : i + 500]
                ]
                stmt = _insert(conn)(jobs).values(rows).on_conflict_do_nothing()
                ids += [r[0] for r in conn.execute(stmt.returning(jobs.c.id))]
        return ids

    def request(self, cluster_id: str, kind: str) -> int:
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            stmt = jobs.insert().values(
                kind=kind, cluster_id=cluster_id, reason="requested", state="queued", queued_at=t
            )
            return int(conn.execute(stmt.returning(jobs.c.id)).scalar_one())

    def claim(
        self, node: str, lease: float, max_backups: int, kinds: tuple[str, ...]
    ) -> JobRow | None:
        """Take the oldest queued job this node may run now: running, with a new
        fencing token and a lease of ``lease`` seconds; None when there is none."""
        with self.cat.engine.begin() as conn:
            if self.pg:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": CLAIM_LOCK})
            t = self.db_now(conn)
            running = jobs.alias("running")
            busy = (
                sa.exists()
                .where(
                    running.c.cluster_id == jobs.c.cluster_id,
                    running.c.state == "running",
                    running.c.kind.in_(WRITERS),
                )
                .correlate(jobs)
            )
            q = sa.select(jobs.c.id).where(
                jobs.c.state == "queued",
                jobs.c.kind.in_(kinds),
                sa.or_(jobs.c.kind.not_in(WRITERS), ~busy),
            )
            n_backups = sa.select(sa.func.count()).where(
                jobs.c.state == "running", jobs.c.kind == "backup"
            )
            if conn.execute(n_backups).scalar_one() >= max_backups:
                q = q.where(jobs.c.kind != "backup")
            q = q.order_by(jobs.c.queued_at, jobs.c.id).limit(1)
            job_id = conn.execute(q.with_for_update(skip_locked=True, of=jobs)).scalar()
            if job_id is None:
                return None
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    state="running",
                    node=node,
                    token=jobs.c.token + 1,
                    attempts=jobs.c.attempts + 1,
                    lease_until=t + timedelta(seconds=lease),
                    started_at=t,
                    error=None,
                )
            )
        return self.get(job_id)

    def heartbeat(self, job_id: int, token: int, lease: float) -> bool:
        """Extend the lease; False when it is no longer this holder's (abandon)."""
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            done = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.token == token, jobs.c.state == "running")
                .values(lease_until=t + timedelta(seconds=lease))
            )
        return bool(done.rowcount)

    def finish(self, job_id: int, token: int, state: str, result: Any, error: str | None) -> bool:
        """Commit a job's outcome under its fencing token; False: the lease was lost and
        nothing was written."""
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            done = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.token == token, jobs.c.state == "running")
                .values(
                    state=state,
                    finished_at=t,
                    lease_until=None,
                    result=None if result is None else json.dumps(result),
                    error=error,
                )
            )
        return bool(done.rowcount)

    def hand_back(self, job_id: int, token: int) -> bool:
        """A stopping node gives a running job back to the queue (reason retry)."""
        with self.cat.engine.begin() as conn:
            done = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.token == token, jobs.c.state == "running")
                .values(state="queued", reason="retry", node=None, lease_until=None)
            )
        return bool(done.rowcount)

    def requeue_expired(self, max_attempts: int) -> list[int]:
        """Jobs whose lease ran out (their node died or froze) go back to the queue as
        retries, or fail after ``max_attempts`` claims. Returns their ids."""
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            expired = sa.and_(jobs.c.state == "running", jobs.c.lease_until < t)
            ids = [r[0] for r in conn.execute(sa.select(jobs.c.id).where(expired))]
            if not ids:
                return []
            mine = sa.and_(expired, jobs.c.id.in_(ids))
            conn.execute(
                jobs.update()
                .where(mine, jobs.c.attempts >= max_attempts)
                .values(
                    state="failed",
                    finished_at=t,
                    lease_until=None,
                    error=f"its node stopped answering {max_attempts} time(s) (lease expired)",
                )
            )
            conn.execute(
                jobs.update()
                .where(mine)
                .values(state="queued", reason="retry", node=None, lease_until=None)
            )
        return ids

    def get(self, job_id: int) -> JobRow:
        rows = self.list(job_id=job_id)
        if not rows:
            raise NotFound(f"no job {job_id}", hint="see pgharbor job list")
        return rows[0]

    def list(
        self,
        *,
        cluster_id: str | None = None,
        state: str | None = None,
        job_id: int | None = None,
        job_ids: list[int] | None = None,
        limit: int = 200,
    ) -> list[JobRow]:
        q = sa.select(jobs, clusters.c.name.label("cluster")).join(
            clusters, clusters.c.id == jobs.c.cluster_id
        )
        if cluster_id is not None:
            q = q.where(jobs.c.cluster_id == cluster_id)
        if state is not None:
            q = q.where(jobs.c.state == state)
        if job_id is not None:
            q = q.where(jobs.c.id == job_id)
        if job_ids is not None:
            q = q.where(jobs.c.id.in_(job_ids))
        q = q.order_by(jobs.c.id.desc()).limit(limit)
        with self.cat.engine.connect() as conn:
            return [_job(r) for r in conn.execute(q).mappings()]

    # -- nodes -------------------------------------------------------------------
    def join(self, name: str, host: str, pid: int, version: str, stale: float, alive: Any) -> None:
        """Record this node. Refused (Conflict) when a node of the same name still
        heartbeats, or, on SQLite (one node only), when any other node does; ``alive(host,
        pid)`` tells whether a node that has not gone stale is in fact gone."""
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            fresh = t - timedelta(seconds=stale)
            q = sa.select(nodes).where(nodes.c.heartbeat_at > fresh)
            if self.pg:
                q = q.where(nodes.c.name == name)
            for r in conn.execute(q).mappings():
                if (r["host"], r["pid"]) != (host, pid) and alive(r["host"], r["pid"]):
                    if not self.pg:
                        raise Conflict(
                            f"serve node {r['name']} (pid {r['pid']} on {r['host']}) already "
                            "runs on this SQLite catalog: SQLite allows one node",
                            hint="use a PostgreSQL catalog for more than one node",
                        )
                    raise Conflict(f"a serve node named {name} is already running")
            conn.execute(nodes.delete().where(nodes.c.name == name))
            if not self.pg:
                conn.execute(nodes.delete())
            conn.execute(
                nodes.insert().values(
                    name=name, host=host, pid=pid, version=version, started_at=t, heartbeat_at=t
                )
            )

    def node_heartbeat(self, name: str) -> bool:
        with self.cat.engine.begin() as conn:
            t = self.db_now(conn)
            done = conn.execute(nodes.update().where(nodes.c.name == name).values(heartbeat_at=t))
        return bool(done.rowcount)

    def leave(self, name: str) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(nodes.delete().where(nodes.c.name == name))
