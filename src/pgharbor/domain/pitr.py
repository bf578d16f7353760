"""Choosing the backup for a recovery target: the newest usable one, so the least WAL
has to be replayed. Pure: it works on plain values, tested table-driven."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.wal import format_lsn, parse_lsn
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


def choose_backup(
    backups: list[BackupPoint], target: RecoveryTarget, history: TimelineHistory
) -> BackupPoint:
    """The newest backup that ends before the target, on a timeline leading to it."""
    usable = [b for b in backups if history.reaches(b.timeline, parse_lsn(b.stop_lsn))]
    if not usable:
        raise NotFound(f"no backup lies on a timeline leading to timeline {history.timeline}")
    if target.kind == "time":
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


def describe_point(b: BackupPoint) -> str:
    return f"backup {b.id} (timeline {b.timeline}, ends at {format_lsn(parse_lsn(b.stop_lsn))})"
