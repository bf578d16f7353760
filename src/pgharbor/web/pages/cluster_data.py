"""The cluster page's data: the status the CLI's ``status`` shows, the timeline picture,
copies per target, backups with holds, restore points, drills, jobs, events, check
states; and, asked of the primary on its own (a short timeout), replication lag and
slots.
A bounded number of catalog queries, whatever the cluster's size."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pgharbor.catalog.backups import Backup
from pgharbor.catalog.drills import DrillRepo, DrillRow
from pgharbor.catalog.events import Event
from pgharbor.catalog.repo import aware
from pgharbor.catalog.restore_points import RestorePointRepo
from pgharbor.catalog.retention import HoldRow, RetentionRepo
from pgharbor.catalog.schema import check_states, targets, wal_copies
from pgharbor.domain.gaps import LOST
from pgharbor.domain.pitr import RestorePoint
from pgharbor.model import Cluster, Placement
from pgharbor.monitor.result import State
from pgharbor.services import backups as backup_service
from pgharbor.services import events as event_service
from pgharbor.services import jobs as job_service
from pgharbor.services.context import Services
from pgharbor.services.jobs import JobView
from pgharbor.services.status import ClusterStatus, cluster_status
from pgharbor.web.pages.timeline import Picture, picture


@dataclass(frozen=True)
class TargetCopies:
    target: str
    priority: int
    active: bool
    wal_files: int
    wal_bytes: int
    last_archived_at: datetime | None
    backups: int
    failed_copies: int


@dataclass(frozen=True)
class CheckRow:
    service: str
    state: str
    text: str
    changed_at: datetime
    checked_at: datetime


@dataclass
class Primary:
    """What the primary answered (or why not)."""

    error: str | None = None
    lag: list[dict[str, Any]] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClusterPage:
    cluster: Cluster
    status: ClusterStatus
    picture: Picture
    copies: list[TargetCopies]
    backups: list[Backup]  # newest first
    holds: dict[str, HoldRow]
    points: list[RestorePoint]
    drills: list[DrillRow]
    jobs: list[JobView]
    events: list[Event]  # newest first
    checks: list[CheckRow]


def _copies(
    svc: Services, c: Cluster, places: list[Placement], bks: list[Backup]
) -> list[TargetCopies]:
    q = (
        sa.select(
            wal_copies.c.target_id,
            sa.func.count(),
            sa.func.coalesce(
                sa.func.sum(sa.func.coalesce(wal_copies.c.stored_size, wal_copies.c.size)), 0
            ),
            sa.func.max(wal_copies.c.archived_at),
            sa.func.sum(sa.case((wal_copies.c.status != "ok", 1), else_=0)),
        )
        .where(wal_copies.c.cluster_id == c.id)
        .group_by(wal_copies.c.target_id)
    )
    with svc.catalog.engine.connect() as conn:
        per = {tid: (int(n), int(b), at, int(bad or 0)) for tid, n, b, at, bad in conn.execute(q)}
        names = dict(conn.execute(sa.select(targets.c.id, targets.c.name)).all())
    out = []
    listed = set()
    for p in places:
        n, b, at, bad = per.get(p.target_id, (0, 0, None, 0))
        held = sum(p.target in x.targets for x in bks)
        out.append(
            TargetCopies(
                p.target, p.priority, p.active, n - bad, b, aware(at) if at else None, held, bad
            )
        )
        listed.add(p.target_id)
    for tid, (n, b, at, bad) in per.items():  # copies left on a target no longer placed
        if tid not in listed:
            name = names.get(tid, tid)
            held = sum(name in x.targets for x in bks)
            out.append(
                TargetCopies(name, 0, False, n - bad, b, aware(at) if at else None, held, bad)
            )
    return out


def _checks(svc: Services, c: Cluster) -> list[CheckRow]:
    q = (
        sa.select(check_states)
        .where(check_states.c.cluster_id == c.id)
        .order_by(check_states.c.service)
    )
    with svc.catalog.engine.connect() as conn:
        return [
            CheckRow(
                r["service"],
                State(int(r["state"])).name,
                r["text"],
                aware(r["changed_at"]),
                aware(r["checked_at"]),
            )
            for r in conn.execute(q).mappings()
        ]


def primary(c: Cluster, timeout: int = 3) -> Primary:
    """Replication lag and slots, read from the primary now (a short connect timeout: a
    primary that is down costs the page at most that)."""
    from psycopg.rows import dict_row

    from pgharbor.errors import PgharborError
    from pgharbor.monitor.replication import LAG, SLOTS
    from pgharbor.pg.identity import connect

    out = Primary()
    try:
        with connect(c.dsn, timeout=timeout) as conn:
            conn.execute("SET statement_timeout = '5s'")
            with conn.cursor(row_factory=dict_row) as cur:
                out.lag = list(cur.execute(LAG).fetchall())
                out.slots = list(cur.execute(SLOTS).fetchall())
    except PgharborError as exc:
        out.error = exc.message
    except Exception as exc:  # a refused query, a standby: shown, the page still loads
        out.error = " ".join(str(exc).split())[:300] or type(exc).__name__
    return out


def cluster_page(svc: Services, name: str) -> ClusterPage:
    """From the catalog alone (the primary's replication is its own request: a primary
    that is down never slows this page)."""
    catalog = svc.catalog
    c = catalog.cluster(name)
    files = catalog.wal_files(name)  # read once: the status and the picture
    st = cluster_status(svc, name, files)
    bks = backup_service.list_backups(svc, name)
    places = catalog.placements(name)
    points = RestorePointRepo(catalog).for_cluster(c.id)  # known ones: no WAL scan here
    drill_rows = DrillRepo(catalog).for_cluster(c.id, name, 20)
    size = c.wal_segment_size
    lost = [(g.timeline, *g.segnos(size)) for g in st.gaps if g.state == LOST]
    pic = picture(
        files=files,
        segment_size=size,
        windows=st.windows,
        backups=bks,
        points=points,
        drills=drill_rows,
        lost=lost,
    )
    return ClusterPage(
        cluster=c,
        status=st,
        picture=pic,
        copies=_copies(svc, c, places, bks),
        backups=list(reversed(bks)),
        holds=RetentionRepo(catalog).holds(c.id),
        points=points,
        drills=drill_rows,
        jobs=job_service.list_jobs(svc, cluster=name, limit=20),
        events=list(reversed(event_service.list_events(svc, name, limit=30))),
        checks=_checks(svc, c),
    )
