"""Retention: which backups and which archived WAL files an ``expire`` run deletes. Pure:
the plan is a function of the catalog state, the policy and the time, so a dry run shows
exactly what the real run does.

Backups (ordered by their stop time, never by WAL name or timeline) are kept when any
rule keeps them; the plan names every rule that did:

- ``min-backups``: the newest N usable ones (never overridable, at least 1: the newest
  usable backup is never deleted);
- ``keep-last``: the newest N usable ones;
- ``window``: every usable backup that stopped inside the recovery window, and
  ``window-anchor``: the newest one that stopped before it (which makes the whole window
  recoverable);
- ``hold``: a backup pinned with ``backup hold`` (until its time, if it has one);
- ``running`` and ``in-use``: a backup being written, or one a running job uses.

The rest is deleted: usable backups no rule keeps, ``failed`` ones, and ones an earlier
run left ``expiring`` or ``deleting`` (resumed).

WAL is expired per timeline: every kept backup (on timeline T, starting in segment s)
keeps the segments from s onward on T and on every timeline that descends from T.
Segment numbers are only compared within one timeline. A timeline whose history is
unknown keeps all its files. ``.history`` files are never deleted (see ``history_kept``
for the ones the rules need; PostgreSQL picks a new timeline id by probing the archive
for them, so deleting one could let a later promotion reuse an id).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.wal import WalKind, parse_name
from pgharbor.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)([smhdw])")
USABLE = "ok"
RESUMED = frozenset({"expiring", "deleting"})


@dataclass(frozen=True)
class Policy:
    keep_last: int | None = None
    recovery_window: timedelta | None = None
    min_backups: int = 1

    @property
    def empty(self) -> bool:
        """No rule but the floor: expiring with it would keep only min-backups."""
        return self.keep_last is None and self.recovery_window is None


@dataclass(frozen=True)
class Hold:
    until: datetime | None  # None: until released
    reason: str

    def active(self, now: datetime) -> bool:
        return self.until is None or self.until > now


@dataclass(frozen=True)
class BackupState:
    id: str
    status: str
    timeline: int
    start_lsn: int | None
    stop_time: datetime | None
    start_time: datetime
    hold: Hold | None = None


@dataclass(frozen=True)
class Verdict:
    id: str
    status: str
    stop_time: datetime | None
    rules: tuple[str, ...]  # the rules that keep it; empty: deleted
    why_delete: str = ""  # for a deleted one: "no rule", "failed", "resume"

    @property
    def keep(self) -> bool:
        return bool(self.rules)

    @property
    def action(self) -> str:
        return f"keep ({', '.join(self.rules)})" if self.rules else "delete"


@dataclass(frozen=True)
class TimelineWal:
    timeline: int
    kept_from: str | None  # the first kept segment name on it (None: nothing kept)
    kept: int
    deleted: int
    note: str = ""  # "history unknown: every file kept"


@dataclass(frozen=True)
class Plan:
    backups: list[Verdict]
    wal_delete: list[str]
    timelines: list[TimelineWal]
    history_kept: list[int]  # timelines whose .history the rules need
    refusals: list[str] = field(default_factory=list)  # never overridable
    guards: list[str] = field(default_factory=list)  # overridable with --force

    @property
    def delete(self) -> list[Verdict]:
        return [v for v in self.backups if not v.keep]


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``1w2d``, ``90m``, ``3600s`` (a sum of amounts with a unit)."""
    t = text.strip().lower()
    parts = _DURATION.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise UsageError(
            f"bad duration {text!r}: use amounts with a unit s, m, h, d or w (e.g. 7d, 36h, 1w2d)"
        )
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def format_duration(d: timedelta) -> str:
    left, out = int(d.total_seconds()), []
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if left >= size:
            out.append(f"{left // size}{unit}")
            left %= size
    return "".join(out) or "0s"


def _order(b: BackupState) -> tuple[datetime, str]:
    return (b.stop_time or b.start_time, b.id)


def _rules(usable: list[BackupState], policy: Policy, now: datetime) -> dict[str, list[str]]:
    """The keep rules of each usable backup (newest first in ``usable``)."""
    kept: dict[str, list[str]] = {b.id: [] for b in usable}
    for b in usable[: max(policy.min_backups, 1)]:
        kept[b.id].append("min-backups")
    if policy.keep_last:
        for b in usable[: policy.keep_last]:
            kept[b.id].append("keep-last")
    if policy.recovery_window is not None:
        start = now - policy.recovery_window
        inside = [b for b in usable if b.stop_time is not None and b.stop_time >= start]
        before = [b for b in usable if b.stop_time is not None and b.stop_time < start]
        for b in inside:
            kept[b.id].append("window")
        if before:
            kept[before[0].id].append("window-anchor")
    for b in usable:
        if b.hold is not None and b.hold.active(now):
            kept[b.id].append("hold")
    return kept


def judge(
    backups: Iterable[BackupState],
    policy: Policy,
    now: datetime,
    in_use: frozenset[str] = frozenset(),
) -> list[Verdict]:
    """A verdict for every backup, oldest first."""
    ordered = sorted(backups, key=_order)
    usable = [b for b in reversed(ordered) if b.status == USABLE]
    kept = _rules(usable, policy, now)
    out = []
    for b in ordered:
        rules = list(kept.get(b.id, []))
        why = "no rule"
        if b.status == "running":
            rules.append("running")
        elif b.status in RESUMED:
            why = "resume"
        elif b.status != USABLE:
            why = b.status
        if b.id in in_use and b.status not in RESUMED:
            rules.append("in-use")
        out.append(Verdict(b.id, b.status, b.stop_time, tuple(rules), "" if rules else why))
    return out


def descendants(timeline: int, histories: Mapping[int, TimelineHistory]) -> set[int]:
    """``timeline`` and every known timeline whose history passes through it."""
    return {timeline} | {t for t, h in histories.items() if timeline in h.ends}


def _cutoffs(
    kept: Iterable[BackupState], histories: Mapping[int, TimelineHistory], size: int
) -> dict[int, int]:
    """Per timeline, the first segment number the kept backups need."""
    cut: dict[int, int] = {}
    for b in kept:
        if b.start_lsn is None and b.status == "running":
            continue  # not started yet: what it will need is not archived yet
        first = (b.start_lsn or 0) // size  # a finished one without a start: keep all
        for t in descendants(b.timeline, histories):
            cut[t] = min(cut.get(t, first), first)
    return cut


def _known(timeline: int, histories: Mapping[int, TimelineHistory]) -> bool:
    return timeline == 1 or timeline in histories


def expire_wal(
    kept: list[BackupState],
    names: Iterable[str],
    histories: Mapping[int, TimelineHistory],
    size: int,
) -> tuple[list[str], list[TimelineWal], list[int]]:
    """(names to delete, a summary per timeline, timelines whose history is needed)."""
    cut = _cutoffs(kept, histories, size)
    per: dict[int, tuple[list[str], list[str]]] = {}  # timeline -> (kept, deleted)
    for name in sorted(names):
        wal = parse_name(name)
        if wal.kind is WalKind.HISTORY:
            continue
        keep_it, delete_it = per.setdefault(wal.timeline, ([], []))
        t = wal.timeline
        if not _known(t, histories) or (t in cut and wal.segno(size) >= cut[t]):
            keep_it.append(name)
        else:
            delete_it.append(name)
    summary = []
    for t, (keep_it, delete_it) in sorted(per.items()):
        note = "" if _known(t, histories) else "history unknown: every file kept"
        first = min(keep_it, key=lambda n: parse_name(n).segno(size), default=None)
        summary.append(TimelineWal(t, first, len(keep_it), len(delete_it), note))
    needed = {t for t, (keep_it, _) in per.items() if keep_it}
    needed |= {t for b in kept for t in descendants(b.timeline, histories) if t not in per}
    for t in list(needed):
        if t in histories:
            needed |= set(histories[t].ends)
    deleted = [n for _, (_, d) in sorted(per.items()) for n in d]
    return deleted, summary, sorted(t for t in needed if t != 1)


def gaps_in_window(
    anchor: BackupState | None,
    names: Iterable[str],
    histories: Mapping[int, TimelineHistory],
    size: int,
    acknowledged: Iterable[tuple[int, int, int]] = (),
) -> list[str]:
    """Segments missing between the window's anchor and the newest archived segment, on
    the anchor's timeline and each descendant (from where it branched): one line per
    timeline with a gap. ``acknowledged``: (timeline, first, last segment number) of
    lost gaps a human acknowledged (``wal gaps ack``); segments inside them pass."""
    if anchor is None or anchor.start_lsn is None:
        return []
    have: dict[int, set[int]] = {}
    for name in names:
        wal = parse_name(name)
        if wal.kind in (WalKind.SEGMENT, WalKind.PARTIAL):
            have.setdefault(wal.timeline, set()).add(wal.segno(size))
    first = anchor.start_lsn // size
    found = []
    for t in sorted(descendants(anchor.timeline, histories)):
        segs = have.get(t, set())
        lo = first
        if t != anchor.timeline:
            h = histories[t]
            lo = max(lo, h.ends[max(h.ends)] // size)
        top = max(segs, default=lo - 1)
        acked = [(a, b) for tl, a, b in acknowledged if tl == t]
        missing = [
            s
            for s in range(lo, top + 1)
            if s not in segs and not any(a <= s <= b for a, b in acked)
        ]
        if missing:
            found.append(
                f"timeline {t}: {len(missing)} segment(s) missing from segment {missing[0]:X} "
                f"on (the recovery window needs them)"
            )
    return found


def plan(
    backups: list[BackupState],
    policy: Policy,
    now: datetime,
    names: Iterable[str],
    histories: Mapping[int, TimelineHistory],
    size: int,
    in_use: frozenset[str] = frozenset(),
    acknowledged: Iterable[tuple[int, int, int]] = (),
) -> Plan:
    """The whole expire plan of one cluster (see the module). ``acknowledged``: the
    acknowledged lost gaps (see gaps_in_window)."""
    names = list(names)
    verdicts = judge(backups, policy, now, in_use)
    by_id = {b.id: b for b in backups}
    kept = [by_id[v.id] for v in verdicts if v.keep]
    refusals = []
    if policy.empty:
        refusals.append("no retention policy is set (neither keep-last nor recovery-window)")
    if not any(b.status == USABLE for b in kept):
        refusals.append("no usable backup would be left: nothing is expired")
        kept = []
    wal_delete, timelines, history = (
        expire_wal(kept, names, histories, size) if kept else ([], [], [])
    )
    usable = sum(b.status == USABLE for b in backups)
    doomed = sum(v.status == USABLE for v in verdicts if not v.keep)
    guards = []
    if doomed * 2 > usable:
        guards.append(f"the run would delete {doomed} of {usable} usable backups (more than half)")
    anchors = [by_id[v.id] for v in verdicts if {"window", "window-anchor"} & set(v.rules)]
    if anchors:
        guards += gaps_in_window(anchors[0], names, histories, size, list(acknowledged))
    return Plan(verdicts, wal_delete, timelines, history, refusals, guards)
