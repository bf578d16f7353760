"""Choosing the backup for a recovery target: the newest usable one, so the least WAL
has to be replayed; finding a named restore point on a timeline's history. Pure: it works
on plain values, tested table-driven."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.wal import (
    LONG_HEADER_SIZE,
    XLOG_BLCKSZ,
    WalKind,
    format_lsn,
    parse_lsn,
    parse_name,
)
from pgharbor.errors import NotFound, UsageError

Kind = Literal["time", "lsn", "xid", "name", "immediate", "end"]


@dataclass(frozen=True)
class RecoveryTarget:
    kind: Kind = "end"
    value: str | None = None
    inclusive: bool = True
    timeline: str = "latest"  # "latest", "current" or a number
    action: str = "promote"

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the archive"
        if self.kind == "immediate":
            return "the end of the backup (immediate)"
        return f"{self.kind} {self.value}"

    @property
    def time(self) -> datetime:
        assert self.value is not None
        return parse_time(self.value)

    @classmethod
    def from_options(
        cls,
        *,
        time: str | None = None,
        lsn: str | None = None,
        xid: str | None = None,
        name: str | None = None,
        immediate: bool = False,
        inclusive: bool = True,
        timeline: str = "latest",
        action: str = "promote",
    ) -> RecoveryTarget:
        """The target a restore's options name (at most one of them), checked."""
        options: tuple[tuple[Kind, str | None], ...] = (
            ("time", time),
            ("lsn", lsn),
            ("xid", xid),
            ("name", name),
        )
        given: list[tuple[Kind, str | None]] = [(k, v) for k, v in options if v is not None]
        if immediate:
            given.append(("immediate", None))
        if len(given) > 1:
            raise UsageError(
                "give at most one of --target-time, --target-lsn, --target-xid, "
                "--target-name, --target-immediate"
            )
        if action not in ("promote", "pause", "shutdown"):
            raise UsageError(f"--target-action is promote, pause or shutdown, not {action!r}")
        if not given:
            return cls("end", None, inclusive, timeline, action)
        kind, value = given[0]
        if kind == "time":
            assert value is not None
            value = parse_time(value).isoformat(sep=" ")
        elif kind == "lsn":
            assert value is not None
            parse_lsn(value)
        elif kind == "xid" and not (value or "").isdigit():
            raise UsageError(f"--target-xid takes a transaction id (a number), not {value!r}")
        return cls(kind, value, inclusive, timeline, action)


def parse_time(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.strip().replace(" UTC", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a timestamp (use ISO 8601 with a time zone, e.g. 2026-11-21 13:08:06+00)"
        ) from None
    if dt.tzinfo is None:
        raise UsageError(f"timestamp {text!r} has no time zone: add one (e.g. +00)")
    return dt


@dataclass(frozen=True)
class BackupPoint:
    id: str
    timeline: int
    stop_lsn: str
    stop_time: datetime
    stop_xmin: int | None
    start_lsn: str | None = None  # where its replay starts (the checkpoint's redo point)


@dataclass(frozen=True)
class RestorePoint:
    """A named restore point: ``lsn`` is the end of its WAL record (what
    pg_create_restore_point returns); ``source`` is "created" (by pgharbor) or "wal"
    (found in the archived WAL: made with plain SQL)."""

    name: str
    lsn: str
    timeline: int
    time: datetime | None = None
    source: str = "created"


SHORT_HEADER_SIZE = 24  # XLogPageHeaderData, MAXALIGNed


def record_end(start: int, total: int, segment_size: int) -> int:
    """The end LSN of a WAL record of ``total`` bytes starting at ``start`` (as
    pg_waldump prints them): MAXALIGNed, skipping the page headers it runs across."""
    pos, left = start, (total + 7) & ~7
    while left > 0:
        if pos % XLOG_BLCKSZ == 0:
            pos += LONG_HEADER_SIZE if pos % segment_size == 0 else SHORT_HEADER_SIZE
        take = min(left, XLOG_BLCKSZ - pos % XLOG_BLCKSZ)
        pos += take
        left -= take
    return pos


def occurrences(
    points: list[RestorePoint], name: str, history: TimelineHistory
) -> list[RestorePoint]:
    """The restore points called ``name`` that recovery to ``history.timeline`` replays,
    in WAL order (PostgreSQL allows one name many times)."""
    found = [p for p in points if p.name == name and history.reaches(p.timeline, parse_lsn(p.lsn))]
    return sorted(found, key=lambda p: parse_lsn(p.lsn))


def choose_backup(
    backups: list[BackupPoint],
    target: RecoveryTarget,
    history: TimelineHistory,
    restore_points: list[RestorePoint] | None = None,
) -> BackupPoint:
    """The newest backup that ends before the target, on a timeline leading to it."""
    usable = [b for b in backups if history.reaches(b.timeline, parse_lsn(b.stop_lsn))]
    if not usable:
        raise NotFound(f"no backup lies on a timeline leading to timeline {history.timeline}")
    if target.kind == "name":
        usable = _before_restore_point(usable, target, history, restore_points or [])
    elif target.kind == "time":
        when = target.time
        usable = [b for b in usable if b.stop_time <= when]
    elif target.kind == "lsn":
        assert target.value is not None
        lsn = parse_lsn(target.value)
        usable = [b for b in usable if parse_lsn(b.stop_lsn) <= lsn]
    elif target.kind == "xid":
        assert target.value is not None
        xid = int(target.value)
        # every xid below stop_xmin had ended when the backup stopped: its commit may lie
        # inside the backup, where recovery could not stop before it
        usable = [b for b in usable if b.stop_xmin is not None and b.stop_xmin <= xid]
    if not usable:
        raise NotFound(f"no backup ends before the recovery target ({target.describe()})")
    return max(usable, key=lambda b: (parse_lsn(b.stop_lsn), b.stop_time))


def _before_restore_point(
    usable: list[BackupPoint],
    target: RecoveryTarget,
    history: TimelineHistory,
    points: list[RestorePoint],
) -> list[BackupPoint]:
    """Backups from which recovery stops at the newest restore point of that name on the
    history. Recovery stops at the first one of that name it replays, so with a name used
    more than once the backup must also start after the previous one (else recovery would
    stop there, or fail before the backup is consistent)."""
    assert target.value is not None
    found = occurrences(points, target.value, history)
    if not found:
        raise NotFound(
            f"the archive holds no restore point named {target.value!r} on the history of "
            f"timeline {history.timeline}",
            hint="see pgharbor restore-point list CLUSTER",
        )
    at = parse_lsn(found[-1].lsn)
    ends_before = [b for b in usable if parse_lsn(b.stop_lsn) < at]
    if len(found) == 1 or not ends_before:
        return ends_before
    previous = parse_lsn(found[-2].lsn)
    clear = [
        b for b in ends_before if b.start_lsn is not None and parse_lsn(b.start_lsn) >= previous
    ]
    if not clear:
        raise NotFound(
            f"restore point {target.value!r} is in the archive {len(found)} times; recovery "
            f"stops at the first one it replays, and no backup starts between "
            f"{found[-2].lsn} and {found[-1].lsn}",
            hint=f"restore with --target-lsn {found[-1].lsn} instead",
        )
    return clear


@dataclass(frozen=True)
class ArchiveEnd:
    """How far the archived WAL of a timeline's history reaches."""

    segment: str  # the newest segment on the history
    lsn: int  # where the archived WAL ends (the end of that segment, or its timeline's)
    time: datetime  # when the newest of them was archived: nothing later can be replayed


def archive_end(
    archived: list[tuple[str, datetime]], history: TimelineHistory, segment_size: int
) -> ArchiveEnd | None:
    """The end of the archive for recovery along ``history``, from (name, archived at) of
    the archived files; None when no segment of the history is archived."""
    end: ArchiveEnd | None = None
    newest: datetime | None = None
    for name, when in archived:
        wal = parse_name(name)
        if wal.kind is not WalKind.SEGMENT and wal.kind is not WalKind.PARTIAL:
            continue
        start = wal.segno(segment_size) * segment_size
        if not history.reaches(wal.timeline, start):
            continue
        stop = start + segment_size
        if wal.timeline != history.timeline:
            stop = min(stop, history.ends[wal.timeline])
        newest = when if newest is None else max(newest, when)
        if end is None or stop > end.lsn:
            end = ArchiveEnd(name, stop, when)
    if end is None or newest is None:
        return None
    return ArchiveEnd(end.segment, end.lsn, newest)


def check_reachable(target: RecoveryTarget, end: ArchiveEnd | None, point: int | None) -> None:
    """Refuse a time, LSN or restore point target beyond the end of the archive (PostgreSQL
    would replay everything, then fail: "recovery ended before the target was reached").
    ``point``: the LSN of the restore point a name target stops at."""
    hint = "run SELECT pg_switch_wal() on the primary to archive its current WAL, then restore"
    if target.kind not in ("time", "lsn", "name"):
        return
    if end is None:
        raise NotFound(f"no archived WAL reaches {target.describe()}", hint=hint)
    where = f"the archive ends with {end.segment}, archived {end.time.isoformat(sep=' ')}"
    if target.kind == "time":
        if target.time > end.time:
            raise UsageError(
                f"--target-time {target.value} is after the end of the archive ({where})",
                hint=hint,
            )
        return
    lsn = point if target.kind == "name" else parse_lsn(target.value or "")
    if lsn is not None and lsn > end.lsn:
        what = (
            f"restore point {target.value!r} ({format_lsn(lsn)})"
            if target.kind == "name"
            else f"--target-lsn {target.value}"
        )
        raise UsageError(
            f"{what} is after the end of the archive ({where}, at {format_lsn(end.lsn)})",
            hint=hint,
        )
