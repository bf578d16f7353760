"""WAL gaps: which segments a cluster's archive must hold, and which it lacks. Pure.

The expected set of a timeline runs from where a usable backup needs it to the newest
segment archived on that timeline: on a backup's own timeline from the segment of its
start, on every timeline that descends from it (its history reaches the backup's start)
from the segment where that timeline branched off. Segment numbers are compared only
within one timeline.

A segment of the expected set that no placement holds is *missing*; runs of missing
segments are gaps. A gap is *pending* while it may still be in flight (the segment after
it was archived less than ``grace`` ago: PostgreSQL archives in order, an async pusher
nearly so), then *lost*. A segment some placements hold and others lack is *placement
lag* (a copy to make, not a gap).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.wal import WalKind, lsn_segno, parse_lsn, parse_name, segment_name

PENDING = "pending"
LOST = "lost"
RESOLVED = "resolved"


@dataclass(frozen=True)
class Segment:
    """What the catalog knows of one archived segment: the placements (target names)
    holding a good copy, and when it was first archived."""

    targets: frozenset[str]
    archived_at: datetime | None = None


@dataclass(frozen=True)
class Run:
    """Consecutive missing segments ``first``..``last`` (segment numbers) of a timeline."""

    timeline: int
    first: int
    last: int
    state: str  # pending or lost
    since: datetime | None  # when the segment after the run was archived

    @property
    def segments(self) -> int:
        return self.last - self.first + 1

    def names(self, segment_size: int) -> tuple[str, str]:
        return (
            segment_name(self.timeline, self.first, segment_size),
            segment_name(self.timeline, self.last, segment_size),
        )


@dataclass(frozen=True)
class Lag:
    name: str
    have: tuple[str, ...]  # placements with a good copy
    lacking: tuple[str, ...]  # required placements without one


@dataclass(frozen=True)
class GapScan:
    expected: dict[int, tuple[int, int]]  # timeline -> (first, last) segment numbers
    runs: list[Run] = field(default_factory=list)
    lag: list[Lag] = field(default_factory=list)

    @property
    def lost(self) -> list[Run]:
        return [r for r in self.runs if r.state == LOST]


def expected_starts(
    backups: Iterable[tuple[int, str]],
    histories: Mapping[int, TimelineHistory],
    timelines: Collection[int],
    segment_size: int,
) -> dict[int, int]:
    """The first expected segment of each timeline of ``timelines`` some backup leads to.

    ``backups``: (timeline, start LSN) of each usable backup; ``histories``: the history
    of each timeline above 1 (a timeline without one is followed from no backup but its
    own)."""
    starts: dict[int, int] = {}

    def want(tli: int, segno: int) -> None:
        if tli in timelines and segno < starts.get(tli, segno + 1):
            starts[tli] = segno

    for tli, lsn in backups:
        start = parse_lsn(lsn)
        want(tli, lsn_segno(start, segment_size))
        for t, hist in histories.items():
            if t != tli and tli in hist.ends and hist.reaches(tli, start):
                parent_end = hist.ends[max(hist.ends)]
                want(t, lsn_segno(parent_end, segment_size))
    return starts


def scan(
    segments: Mapping[str, Segment],
    starts: Mapping[int, int],
    required: Collection[str],
    segment_size: int,
    now: datetime,
    grace: timedelta,
) -> GapScan:
    """Missing runs and placement lag over the expected set (see the module).

    ``segments``: every archived segment name the catalog records (with no good copy
    anywhere: an empty ``targets``); ``starts``: the first expected segment per timeline
    (expected_starts); ``required``: the placements that must each hold every segment."""
    by_tli: dict[int, dict[int, tuple[str, Segment]]] = {}
    for name, seg in segments.items():
        wal = parse_name(name)
        if wal.kind is WalKind.SEGMENT and wal.timeline in starts:
            by_tli.setdefault(wal.timeline, {})[wal.segno(segment_size)] = (name, seg)
    out = GapScan(expected={})
    need = frozenset(required)
    for tli, have in sorted(by_tli.items()):
        held = [n for n, (_, s) in have.items() if s.targets and n >= starts[tli]]
        if not held:
            continue
        first, last = starts[tli], max(held)
        out.expected[tli] = (first, last)
        run_start: int | None = None
        for n in range(first, last + 1):
            name, seg = have.get(n, ("", Segment(frozenset())))
            if not seg.targets:
                run_start = n if run_start is None else run_start
                continue
            if run_start is not None:
                since = seg.archived_at
                lost = since is not None and now - since >= grace
                out.runs.append(Run(tli, run_start, n - 1, LOST if lost else PENDING, since))
                run_start = None
            lacking = tuple(sorted(need - seg.targets))
            if lacking:
                out.lag.append(Lag(name, tuple(sorted(seg.targets & need)), lacking))
    return out


def overlaps(run: Run, timeline: int, first: int, last: int) -> bool:
    return run.timeline == timeline and run.first <= last and first <= run.last


def backup_hit(
    timeline: int, wal_start: int, wal_stop: int, lost: Iterable[tuple[int, int, int]]
) -> tuple[int, int, int] | None:
    """The first lost range (timeline, first, last) inside a backup's own WAL range."""
    for t, first, last in lost:
        if t == timeline and first <= wal_stop and wal_start <= last:
            return t, first, last
    return None


def next_slice(items: list[str], cursor: str, elapsed: float | None, period: float) -> list[str]:
    """The next of ``items`` (sorted) to read back: all of them with a period of 0, else
    the share of ``period`` that ``elapsed`` (seconds since the last run; None: a first
    run, 1/24 of the period) is of it, at least one, after ``cursor``, wrapping around.
    Runs every d seconds thus read every item within ceil(period / d) runs."""
    if period <= 0 or not items:
        return items
    spent = elapsed if elapsed is not None else period / 24
    count = min(len(items), max(1, math.ceil(len(items) * min(1.0, spent / period))))
    return ([n for n in items if n > cursor] + [n for n in items if n <= cursor])[:count]
