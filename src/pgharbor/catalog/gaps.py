"""The catalog's record of WAL verification: gaps (their ranges, states and
acknowledgements), copies verify found missing or corrupt, backups marked unusable for a
lost segment, and where each cluster's content verification got to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from pgharbor.catalog.repo import Catalog, aware, now
from pgharbor.catalog.schema import backups, verify_state, wal_copies, wal_gaps
from pgharbor.domain.gaps import LOST, PENDING, RESOLVED, Run
from pgharbor.domain.wal import lsn_segno, parse_lsn, parse_name, segment_name
from pgharbor.errors import Conflict, NotFound, UsageError

OPEN = (PENDING, LOST)
UNUSABLE = "unusable"


@dataclass(frozen=True)
class GapRow:
    id: int
    timeline: int
    first_segment: str
    last_segment: str
    segments: int
    state: str
    first_seen: datetime
    last_seen: datetime
    lost_at: datetime | None = None
    resolved_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    ack_reason: str | None = None

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    def segnos(self, segment_size: int) -> tuple[int, int]:
        return (
            parse_name(self.first_segment).segno(segment_size),
            parse_name(self.last_segment).segno(segment_size),
        )


def _when(v: datetime | None) -> datetime | None:
    return aware(v) if v is not None else None


def _row(r: sa.RowMapping) -> GapRow:
    return GapRow(
        r["id"],
        r["timeline"],
        r["first_segment"],
        r["last_segment"],
        r["segments"],
        r["state"],
        aware(r["first_seen"]),
        aware(r["last_seen"]),
        _when(r["lost_at"]),
        _when(r["resolved_at"]),
        _when(r["acked_at"]),
        r["acked_by"],
        r["ack_reason"],
    )


class GapRepo:
    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog

    def gaps(self, cluster_id: str, *, states: Iterable[str] = OPEN) -> list[GapRow]:
        q = (
            sa.select(wal_gaps)
            .where(wal_gaps.c.cluster_id == cluster_id, wal_gaps.c.state.in_(list(states)))
            .order_by(wal_gaps.c.timeline, wal_gaps.c.first_segment, wal_gaps.c.id)
        )
        with self.cat.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q).mappings()]

    def refresh(
        self,
        cluster_id: str,
        runs: list[Run],
        segment_size: int,
        at: datetime | None = None,
        *,
        resolve: bool = True,
    ) -> list[GapRow]:
        """Make the open gaps those of ``runs``: a run equal to an open gap refreshes it
        (pending becomes lost, lost stays lost); one that differs replaces the open gaps
        it overlaps (keeping the earliest first_seen, and an acknowledgement when it lies
        inside the acknowledged range); open gaps no run overlaps are resolved — unless
        ``resolve`` is false (a run that could not check everything keeps them open)."""
        t = at or now()
        old = self.gaps(cluster_id)
        with self.cat.engine.begin() as conn:
            matched: set[int] = set()
            for run in runs:
                first, last = run.names(segment_size)
                same = [
                    g
                    for g in old
                    if (g.timeline, g.first_segment, g.last_segment) == (run.timeline, first, last)
                ]
                if same:
                    g = same[0]
                    matched.add(g.id)
                    state = LOST if LOST in (g.state, run.state) else PENDING
                    conn.execute(
                        wal_gaps.update()
                        .where(wal_gaps.c.id == g.id)
                        .values(
                            state=state,
                            last_seen=t,
                            lost_at=g.lost_at or (t if state == LOST else None),
                        )
                    )
                    continue
                near = [
                    g
                    for g in old
                    if g.timeline == run.timeline
                    and g.id not in matched
                    and g.first_segment <= last
                    and first <= g.last_segment
                ]
                ack = next(
                    (
                        g
                        for g in near
                        if g.acked and g.first_segment <= first and last <= g.last_segment
                    ),
                    None,
                )
                conn.execute(
                    wal_gaps.insert().values(
                        cluster_id=cluster_id,
                        timeline=run.timeline,
                        first_segment=first,
                        last_segment=last,
                        segments=run.segments,
                        state=run.state,
                        first_seen=min([g.first_seen for g in near] + [t]),
                        last_seen=t,
                        lost_at=t if run.state == LOST else None,
                        acked_at=ack.acked_at if ack else None,
                        acked_by=ack.acked_by if ack else None,
                        ack_reason=ack.ack_reason if ack else None,
                    )
                )
            gone = [g.id for g in old if g.id not in matched and resolve]
            if gone:
                conn.execute(
                    wal_gaps.update()
                    .where(wal_gaps.c.id.in_(gone))
                    .values(state=RESOLVED, resolved_at=t, last_seen=t)
                )
        return self.gaps(cluster_id)

    def ack(self, cluster_id: str, gap_id: int, by: str, reason: str) -> GapRow:
        with self.cat.engine.begin() as conn:
            r = (
                conn.execute(
                    sa.select(wal_gaps).where(
                        wal_gaps.c.id == gap_id, wal_gaps.c.cluster_id == cluster_id
                    )
                )
                .mappings()
                .first()
            )
            if r is None:
                raise NotFound(f"no WAL gap {gap_id} on this cluster")
            if r["state"] == RESOLVED:
                raise Conflict(f"WAL gap {gap_id} is resolved: nothing to acknowledge")
            conn.execute(
                wal_gaps.update()
                .where(wal_gaps.c.id == gap_id)
                .values(acked_at=now(), acked_by=by, ack_reason=reason)
            )
            r = conn.execute(sa.select(wal_gaps).where(wal_gaps.c.id == gap_id)).mappings().one()
        return _row(r)

    # -- copies and backups -----------------------------------------------------
    def mark_copies(self, cluster_id: str, marks: Iterable[tuple[str, str, str, str]]) -> int:
        """(target id, name, status, detail): copies verify read and found missing or
        corrupt (no longer counted as archived there; a repair or push makes them ok)."""
        done = 0
        with self.cat.engine.begin() as conn:
            for target_id, name, status, detail in marks:
                done += conn.execute(
                    wal_copies.update()
                    .where(
                        wal_copies.c.cluster_id == cluster_id,
                        wal_copies.c.target_id == target_id,
                        wal_copies.c.name == name,
                    )
                    .values(status=status, detail=detail)
                ).rowcount
        return done

    def mark_unusable(self, backup_id: str, reason: str) -> bool:
        """An ok backup becomes unusable (never chosen by a restore, nor counted usable)."""
        with self.cat.engine.begin() as conn:
            done = conn.execute(
                backups.update()
                .where(backups.c.id == backup_id, backups.c.status == "ok")
                .values(status=UNUSABLE, error=reason, modified_at=now())
            )
        return bool(done.rowcount)

    def restore_usable(self, cluster_id: str, lost_ids: Iterable[int]) -> list[str]:
        """Backups marked unusable for a gap that is no longer lost (its segments came
        back: resolved) become ok again; returns their ids."""
        keep = {f"lost WAL: gap {i} " for i in lost_ids}
        q = sa.select(backups.c.id, backups.c.error).where(
            backups.c.cluster_id == cluster_id, backups.c.status == UNUSABLE
        )
        back = []
        with self.cat.engine.begin() as conn:
            for bid, error in conn.execute(q).all():
                why = error or ""
                if not why.startswith("lost WAL: gap ") or any(why.startswith(k) for k in keep):
                    continue
                conn.execute(
                    backups.update()
                    .where(backups.c.id == bid, backups.c.status == UNUSABLE)
                    .values(status="ok", error=None, modified_at=now())
                )
                back.append(bid)
        return back

    # -- content verification state --------------------------------------------
    def cursor(self, cluster_id: str) -> tuple[str, str, datetime | None]:
        """(last WAL name read, last backup id verified, when the last run was)."""
        q = sa.select(verify_state).where(verify_state.c.cluster_id == cluster_id)
        with self.cat.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        if r is None:
            return "", "", None
        return r["cursor"], r["backup_cursor"], _when(r["last_run_at"])

    def set_cursor(self, cluster_id: str, wal: str, backup: str, at: datetime) -> None:
        with self.cat.engine.begin() as conn:
            conn.execute(verify_state.delete().where(verify_state.c.cluster_id == cluster_id))
            conn.execute(
                verify_state.insert().values(
                    cluster_id=cluster_id, cursor=wal, backup_cursor=backup, last_run_at=at
                )
            )


def unacknowledged_gaps(
    catalog: Catalog,
    cluster_id: str,
    *,
    timeline: int | None = None,
    from_segment: str | None = None,
    from_lsn: str | None = None,
    segment_size: int | None = None,
) -> list[GapRow]:
    """Lost gaps nobody acknowledged — what retention's guard refuses to run over. With
    ``timeline``: on that timeline only; with ``from_segment`` (a segment name) or
    ``from_lsn`` (with the cluster's ``segment_size``): only gaps ending at or after it on
    ``timeline``. A pending gap is not counted (it may still arrive)."""
    if from_lsn is not None:
        if timeline is None or segment_size is None:
            raise UsageError("from_lsn needs the timeline and the segment size")
        from_segment = segment_name(
            timeline, lsn_segno(parse_lsn(from_lsn), segment_size), segment_size
        )
    out = []
    for g in GapRepo(catalog).gaps(cluster_id, states=(LOST,)):
        if g.acked or (timeline is not None and g.timeline != timeline):
            continue
        if from_segment is not None and g.last_segment[8:] < from_segment[8:]:
            continue
        out.append(g)
    return out
