"""The fleet overview's data: one row per cluster from a fixed number of catalog queries
(seven, whatever the size of the fleet), never a query per cluster.

- state and worst open alert: the check states ``pgharbor serve`` records every
  ``events_interval`` (monitor/events.py): the worst state of a cluster's services, and
  the text of its worst one that is not OK;
- last archived WAL: the newest file name of each cluster (the ``(cluster_id, name)``
  index, read backwards) and when its copy was written;
- backlog: WAL files waiting on the primary (``.ready``) as the last ``archive`` check saw
  them (the page itself never connects to 1,000 primaries);
- backups: usable count, newest (id, end), oldest start;
- recoverable window: from the oldest usable backup's start to the newest archived WAL,
  flagged when verify recorded open WAL gaps; the exact windows per timeline (every
  segment followed) are on the cluster page;
- last proven recoverable: the newest passed restore drill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pgharbor.catalog.gaps import OPEN
from pgharbor.catalog.repo import Catalog, aware
from pgharbor.catalog.schema import backups, check_states, clusters, drills, wal_copies, wal_gaps
from pgharbor.monitor.result import SEVERITY, State

_WAITING = re.compile(r"^(\d+) WAL file\(s\) waiting")
UNCHECKED = "UNCHECKED"


@dataclass(frozen=True)
class Alert:
    service: str
    state: str
    text: str
    since: datetime


@dataclass(frozen=True)
class FleetRow:
    cluster: str
    active: bool
    state: str  # OK, WARNING, CRITICAL, UNKNOWN, or UNCHECKED (no check recorded yet)
    checked_at: datetime | None
    last_wal: str | None
    last_wal_at: datetime | None
    backlog: int | None  # files waiting on the primary at the last archive check
    usable_backups: int
    newest_backup: str | None
    newest_backup_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    open_gaps: int
    proven_at: datetime | None
    alert: Alert | None

    @property
    def last_wal_age_s(self) -> float | None:
        if self.last_wal_at is None:
            return None
        return (datetime.now(UTC) - self.last_wal_at).total_seconds()


@dataclass(frozen=True)
class Fleet:
    at: datetime
    rows: list[FleetRow]

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.rows)


def _opt(v: datetime | None) -> datetime | None:
    return aware(v) if v is not None else None


def _checks(conn: sa.Connection) -> dict[str, list[Any]]:
    q = sa.select(
        check_states.c.cluster_id,
        check_states.c.service,
        check_states.c.state,
        check_states.c.text,
        check_states.c.changed_at,
        check_states.c.checked_at,
    )
    out: dict[str, list[Any]] = {}
    for r in conn.execute(q):
        out.setdefault(r.cluster_id, []).append(r)
    return out


def _last_wal(conn: sa.Connection) -> dict[str, tuple[str | None, datetime | None]]:
    w = wal_copies.alias("w")
    newest = (
        sa.select(w.c.name)
        .where(w.c.cluster_id == clusters.c.id, w.c.status == "ok")
        .order_by(w.c.name.desc())
        .limit(1)
        .correlate(clusters)
        .scalar_subquery()
    )
    w2 = wal_copies.alias("w2")
    at = (
        sa.select(sa.func.max(w2.c.archived_at))
        .where(w2.c.cluster_id == clusters.c.id, w2.c.name == newest, w2.c.status == "ok")
        .correlate(clusters)
        .scalar_subquery()
    )
    q = sa.select(clusters.c.id, newest.label("name"), at.label("at"))
    return {r.id: (r.name, _opt(r.at)) for r in conn.execute(q)}


def _backups(conn: sa.Connection) -> dict[str, tuple[int, datetime | None, datetime | None]]:
    q = (
        sa.select(
            backups.c.cluster_id,
            sa.func.count(),
            sa.func.min(backups.c.start_time),
            sa.func.max(backups.c.stop_time),
        )
        .where(backups.c.status == "ok")
        .group_by(backups.c.cluster_id)
    )
    return {cid: (int(n), _opt(first), _opt(last)) for cid, n, first, last in conn.execute(q)}


def _newest_ids(conn: sa.Connection) -> dict[str, str]:
    b = backups.alias("b")
    newest = (
        sa.select(b.c.id)
        .where(b.c.cluster_id == clusters.c.id, b.c.status == "ok")
        .order_by(b.c.stop_time.desc(), b.c.id.desc())
        .limit(1)
        .correlate(clusters)
        .scalar_subquery()
    )
    return {cid: bid for cid, bid in conn.execute(sa.select(clusters.c.id, newest)) if bid}


def _gaps(conn: sa.Connection) -> dict[str, int]:
    q = (
        sa.select(wal_gaps.c.cluster_id, sa.func.count())
        .where(wal_gaps.c.state.in_(OPEN))
        .group_by(wal_gaps.c.cluster_id)
    )
    return {cid: int(n) for cid, n in conn.execute(q)}


def _proven(conn: sa.Connection) -> dict[str, datetime]:
    q = (
        sa.select(drills.c.cluster_id, sa.func.max(drills.c.finished_at))
        .where(drills.c.status == "ok")
        .group_by(drills.c.cluster_id)
    )
    return {cid: aware(at) for cid, at in conn.execute(q) if at is not None}


def _judge(
    found: list[Any],
) -> tuple[str, datetime | None, Alert | None, int | None]:
    if not found:
        return UNCHECKED, None, None, None
    states = [State(int(str(r.state))) for r in found]
    worst = max(states, key=SEVERITY.__getitem__)
    checked = max(aware(r.checked_at) for r in found)
    bad = [r for r in found if int(str(r.state)) != State.OK]
    alert = None
    if bad:
        r = max(bad, key=lambda r: (SEVERITY[State(int(str(r.state)))], r.changed_at))
        alert = Alert(
            str(r.service), State(int(str(r.state))).name, str(r.text), aware(r.changed_at)
        )
    backlog = None
    for r in found:
        m = _WAITING.match(str(r.text)) if r.service == "archive" else None
        if m:
            backlog = int(m.group(1))
    return worst.name, checked, alert, backlog


def fleet(catalog: Catalog) -> Fleet:
    """Every cluster of the catalog, by name (see the module for what each column is)."""
    with catalog.engine.connect() as conn:
        names = conn.execute(
            sa.select(clusters.c.id, clusters.c.name, clusters.c.active).order_by(clusters.c.name)
        ).all()
        checks = _checks(conn)
        last = _last_wal(conn)
        bk = _backups(conn)
        newest = _newest_ids(conn)
        gaps = _gaps(conn)
        proven = _proven(conn)
    rows = []
    for cid, name, active in names:
        state, checked, alert, backlog = _judge(checks.get(cid, []))
        wal, wal_at = last.get(cid, (None, None))
        usable, first, newest_at = bk.get(cid, (0, None, None))
        rows.append(
            FleetRow(
                cluster=name,
                active=bool(active),
                state=state,
                checked_at=checked,
                last_wal=wal,
                last_wal_at=wal_at,
                backlog=backlog,
                usable_backups=usable,
                newest_backup=newest.get(cid),
                newest_backup_at=newest_at,
                window_start=first if wal_at is not None else None,
                window_end=wal_at if first is not None else None,
                open_gaps=gaps.get(cid, 0),
                proven_at=proven.get(cid),
                alert=alert,
            )
        )
    return Fleet(datetime.now(UTC), rows)
