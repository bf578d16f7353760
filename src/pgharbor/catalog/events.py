"""Events and the last state of each check (see monitor/events.py for what is written)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from pgharbor.catalog.repo import Catalog, aware
from pgharbor.catalog.schema import check_states, clusters, events


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    cluster: str | None
    source: str  # check, job
    kind: str
    state: str
    previous: str | None
    message: str
    actor: str | None = None  # who did it (actions of the API, the dashboard, the CLI)


@dataclass(frozen=True)
class CheckState:
    cluster_id: str
    cluster: str
    service: str
    state: int
    text: str
    changed_at: datetime


class EventRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    def add(
        self,
        cluster_id: str | None,
        source: str,
        kind: str,
        state: str,
        message: str,
        previous: str | None = None,
        actor: str | None = None,
    ) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(
                events.insert().values(
                    at=datetime.now(UTC),
                    cluster_id=cluster_id,
                    source=source,
                    kind=kind,
                    state=state,
                    previous=previous,
                    message=message[:2000],
                    actor=actor[:160] if actor else None,
                )
            )

    def events(
        self, cluster_id: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[Event]:
        q = sa.select(events, clusters.c.name.label("cluster")).outerjoin(
            clusters, clusters.c.id == events.c.cluster_id
        )
        if cluster_id is not None:
            q = q.where(events.c.cluster_id == cluster_id)
        if since is not None:
            q = q.where(events.c.at >= since)
        q = q.order_by(events.c.id.desc()).limit(limit)
        with self.cat.engine.connect() as conn:
            found = conn.execute(q).mappings().all()
        return [
            Event(
                r["id"],
                aware(r["at"]),
                r["cluster"],
                r["source"],
                r["kind"],
                r["state"],
                r["previous"],
                r["message"],
                r["actor"],
            )
            for r in reversed(found)
        ]

    def states(self) -> list[CheckState]:
        q = sa.select(check_states, clusters.c.name.label("cluster")).join(
            clusters, clusters.c.id == check_states.c.cluster_id
        )
        with self.cat.engine.connect() as conn:
            return [
                CheckState(
                    r["cluster_id"],
                    r["cluster"],
                    r["service"],
                    int(r["state"]),
                    r["text"],
                    aware(r["changed_at"]),
                )
                for r in conn.execute(
                    q.order_by(clusters.c.name, check_states.c.service)
                ).mappings()
            ]

    def transition(
        self, cluster_id: str, service: str, state: int, text: str, names: dict[int, str]
    ) -> bool:
        """Record a check's state; on a change (or a first state that is not OK) write
        one event, in the same transaction. Two evaluators racing: the row lock (or
        SQLite's single writer) lets one of them see the change. True: an event."""
        now = datetime.now(UTC)
        key = (check_states.c.cluster_id == cluster_id) & (check_states.c.service == service)
        with self.cat.engine.begin() as conn:
            q = sa.select(check_states.c.state).where(key)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            old = conn.execute(q).scalar_one_or_none()
            if old is None:
                conn.execute(
                    check_states.insert().values(
                        cluster_id=cluster_id,
                        service=service,
                        state=state,
                        text=text[:2000],
                        changed_at=now,
                        checked_at=now,
                    )
                )
            else:
                values = {"text": text[:2000], "checked_at": now, "state": state}
                if old != state:
                    values["changed_at"] = now
                conn.execute(check_states.update().where(key).values(**values))
            changed = (old is None and state != 0) or (old is not None and old != state)
            if changed:
                conn.execute(
                    events.insert().values(
                        at=now,
                        cluster_id=cluster_id,
                        source="check",
                        kind=service,
                        state=names[state],
                        previous=None if old is None else names[int(old)],
                        message=text[:2000],
                    )
                )
        return changed
