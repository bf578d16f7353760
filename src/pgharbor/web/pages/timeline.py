"""The cluster page's timeline picture: pure geometry (no I/O), drawn server-side as
inline SVG by templates/_timeline.html.

One lane per timeline. On it: the archived WAL as runs of consecutive segments (a run
spans the times its first and last segments were archived), the holes between runs and
the segments verify recorded as lost (red), the recoverable windows (a band with a
border), the backups (a bar from start to end; a failed one hatched), the restore points
(triangles) and the drills (circles: green passed, red failed) at their times.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pgharbor.catalog.backups import Backup
from pgharbor.catalog.drills import DrillRow
from pgharbor.catalog.models import WalFile
from pgharbor.domain.pitr import RestorePoint
from pgharbor.domain.wal import segs_per_id
from pgharbor.services.status import Window

WIDTH = 960
LEFT = 64  # the lane labels
RIGHT = 16
LANE = 56
TOP = 8
AXIS = 28


@dataclass(frozen=True)
class Shape:
    kind: str  # wal, gap, window, backup, backup-failed, point, drill-ok, drill-failed
    x: float
    y: float
    w: float
    h: float
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    at: datetime


@dataclass
class Picture:
    width: int
    height: int
    lanes: list[tuple[int, float]]  # (timeline, y of the lane's top)
    shapes: list[Shape] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None

    def of(self, kind: str) -> list[Shape]:
        return [s for s in self.shapes if s.kind == kind]


def runs(
    files: Iterable[WalFile], segment_size: int, lost: Iterable[tuple[int, int, int]] = ()
) -> dict[int, list[tuple[int, int, datetime, datetime]]]:
    """Per timeline, the runs of consecutive archived segments (first segno, last segno,
    first archived, last archived); segments of ``lost`` gaps are holes."""
    holes = {(t, n) for t, a, b in lost for n in range(a, b + 1)}
    per_log = segs_per_id(segment_size)
    seen: dict[int, dict[int, datetime]] = {}
    for f in files:
        name = f.name
        if len(name) != 24:  # a history, backup label or partial file: no segment
            continue
        try:  # the catalog's names are checked when recorded; parse_name per row is slow
            tli, n = int(name[:8], 16), int(name[8:16], 16) * per_log + int(name[16:], 16)
        except ValueError:
            continue
        at = min((c.archived_at for c in f.copies if c.status == "ok"), default=None)
        if at is None or (tli, n) in holes:
            continue
        seen.setdefault(tli, {})[n] = at
    out: dict[int, list[tuple[int, int, datetime, datetime]]] = {}
    for tli, have in sorted(seen.items()):
        found: list[tuple[int, int, datetime, datetime]] = []
        for n in sorted(have):
            if found and found[-1][1] == n - 1:
                a, _, t0, t1 = found[-1]
                found[-1] = (a, n, min(t0, have[n]), max(t1, have[n]))
            else:
                found.append((n, n, have[n], have[n]))
        out[tli] = found
    return out


def _fmt(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _ticks(start: datetime, end: datetime, x: object) -> list[Tick]:
    span = (end - start).total_seconds()
    steps = [60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400]
    step = next((s for s in steps if span / s <= 6), steps[-1])
    first = datetime.fromtimestamp((start.timestamp() // step + 1) * step, UTC)
    out = []
    t = first
    fmt = "%H:%M" if step < 86400 else "%m-%d"
    while t < end:
        out.append(Tick(x(t), t.strftime(fmt), t))  # type: ignore[operator]
        t += timedelta(seconds=step)
    return out


def picture(
    *,
    files: Sequence[WalFile],
    segment_size: int,
    windows: Sequence[Window],
    backups: Sequence[Backup],
    points: Sequence[RestorePoint] = (),
    drills: Sequence[DrillRow] = (),
    lost: Iterable[tuple[int, int, int]] = (),
    now: datetime | None = None,
) -> Picture:
    end = now or datetime.now(UTC)
    wal_runs = runs(files, segment_size, lost)
    tlis = sorted({*wal_runs, *(b.timeline or 1 for b in backups), *(w.timeline for w in windows)})
    if not tlis:
        tlis = [1]
    times = [t for r in wal_runs.values() for _, _, a, b in r for t in (a, b)]
    times += [b.start_time for b in backups] + [p.time for p in points if p.time]
    times += [w.start_time for w in windows if w.start_time]
    times += [d.started_at for d in drills]
    start = min(times, default=end - timedelta(hours=1))
    span = max((end - start).total_seconds(), 60.0)
    start -= timedelta(seconds=span * 0.02)
    span = (end - start).total_seconds()
    inner = WIDTH - LEFT - RIGHT

    def x(t: datetime) -> float:
        return round(LEFT + inner * min(max((t - start).total_seconds() / span, 0.0), 1.0), 1)

    lane_y = {tli: TOP + i * LANE for i, tli in enumerate(tlis)}
    pic = Picture(
        WIDTH, TOP + len(tlis) * LANE + AXIS, sorted(lane_y.items()), start=start, end=end
    )
    add = pic.shapes.append
    for w in windows:
        if w.start_time is None or w.end_archived_at is None:
            continue
        y = lane_y[w.timeline]
        x0, x1 = x(w.start_time), x(w.end_archived_at)
        title = f"recoverable on timeline {w.timeline}: {_fmt(w.start_time)} to {_fmt(w.end_archived_at)} (LSN {w.start_lsn} to {w.end_lsn})"
        add(Shape("window", x0, y + 4, max(x1 - x0, 2.0), LANE - 14, title))
    for tli, found in wal_runs.items():
        y = lane_y[tli] + 30
        for i, (first, last, t0, t1) in enumerate(found):
            title = (
                f"timeline {tli}: {last - first + 1} segment(s) archived {_fmt(t0)} to {_fmt(t1)}"
            )
            add(Shape("wal", x(t0), y, max(x(t1) - x(t0), 2.0), 8, title))
            if i + 1 < len(found):
                na, _, nt0, _ = found[i + 1]
                title = f"timeline {tli}: {na - last - 1} segment(s) missing between {_fmt(t1)} and {_fmt(nt0)}"
                add(Shape("gap", x(t1), y - 3, max(x(nt0) - x(t1), 3.0), 14, title))
    for b in backups:
        y = lane_y.get(b.timeline or 1, TOP) + 12
        stop = b.stop_time or end
        kind = "backup" if b.status == "ok" else "backup-failed"
        title = f"backup {b.id} ({b.status}): {_fmt(b.start_time)} to {_fmt(stop)}"
        add(Shape(kind, x(b.start_time), y, max(x(stop) - x(b.start_time), 4.0), 12, title))
    for p in points:
        if p.time is None or p.timeline not in lane_y:
            continue
        add(
            Shape(
                "point",
                x(p.time),
                lane_y[p.timeline] + 4,
                8,
                8,
                f"restore point {p.name} at {_fmt(p.time)} (LSN {p.lsn})",
            )
        )
    timeline_of = {b.id: b.timeline or 1 for b in backups}
    for d in drills:
        at = d.finished_at or d.started_at
        y = lane_y.get(timeline_of.get(d.backup_id, tlis[-1]), TOP) + LANE - 10
        kind = "drill-ok" if d.ok else "drill-failed"
        title = f"drill {d.id} of backup {d.backup_id}: {d.status} at {_fmt(at)}"
        add(Shape(kind, x(at), y, 5, 5, title))
    pic.ticks = _ticks(start, end, x)
    return pic
