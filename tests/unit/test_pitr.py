"""Backup choice for a recovery target, and timeline histories: table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.pitr import BackupPoint, RecoveryTarget, choose_backup, parse_time
from pgharbor.errors import NotFound, UsageError

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
B1 = BackupPoint("b1", 1, "0/3000100", T0, 700)
B2 = BackupPoint("b2", 1, "0/8000100", T0 + timedelta(hours=1), 900)
B3 = BackupPoint("b3", 2, "0/C000100", T0 + timedelta(hours=2), 1200)  # on timeline 2
ALL = [B1, B2, B3]
# timeline 2 branched from timeline 1 at 0/A000000; timeline 3 from 2 at 0/D000000
H1 = TimelineHistory(1)
H2 = TimelineHistory.parse(2, "1\t0/A000000\tno recovery target specified\n")
H3 = TimelineHistory.parse(3, "1\t0/A000000\tx\n2\t0/D000000\tbefore transaction 1300\n")


@pytest.mark.parametrize(
    ("target", "history", "expected"),
    [
        (RecoveryTarget(), H1, "b2"),  # end of archive on timeline 1: b3 is on another timeline
        (RecoveryTarget(), H2, "b3"),
        (RecoveryTarget(), H3, "b3"),
        (RecoveryTarget("immediate"), H1, "b2"),
        (RecoveryTarget("time", (T0 + timedelta(minutes=30)).isoformat()), H1, "b1"),
        (
            RecoveryTarget("time", (T0 + timedelta(hours=1)).isoformat()),
            H1,
            "b2",
        ),  # ends exactly then
        (RecoveryTarget("time", (T0 + timedelta(hours=5)).isoformat()), H2, "b3"),
        (RecoveryTarget("lsn", "0/7FFFFFF"), H1, "b1"),
        (RecoveryTarget("lsn", "0/8000100"), H1, "b2"),
        (RecoveryTarget("lsn", "0/F000000"), H3, "b3"),
        (RecoveryTarget("xid", "899"), H1, "b1"),  # xid 899 may have committed inside b2
        (RecoveryTarget("xid", "900"), H1, "b2"),
        (RecoveryTarget("xid", "1250"), H2, "b3"),
        (RecoveryTarget("name", "before_upgrade"), H2, "b3"),
    ],
)
def test_choose_backup(target: RecoveryTarget, history: TimelineHistory, expected: str) -> None:
    assert choose_backup(ALL, target, history).id == expected


def test_backup_after_branch_point_does_not_lead_to_timeline() -> None:
    late_on_1 = BackupPoint("late", 1, "0/B000000", T0 + timedelta(hours=3), 1000)
    assert choose_backup([B1, late_on_1], RecoveryTarget(), H2).id == "b1"
    assert choose_backup([B1, late_on_1], RecoveryTarget(), H1).id == "late"


@pytest.mark.parametrize(
    "target",
    [
        RecoveryTarget("time", (T0 - timedelta(minutes=1)).isoformat()),
        RecoveryTarget("lsn", "0/1000000"),
        RecoveryTarget("xid", "10"),
    ],
)
def test_nothing_before_target(target: RecoveryTarget) -> None:
    with pytest.raises(NotFound, match="no backup ends before"):
        choose_backup(ALL, target, H1)


def test_no_backup_on_the_timeline() -> None:
    with pytest.raises(NotFound, match="timeline"):
        choose_backup([B3], RecoveryTarget(), H1)


def test_history_reaches() -> None:
    assert H3.reaches(3, 0x20000000)
    assert H3.reaches(2, 0xD000000) and not H3.reaches(2, 0xD000001)
    assert H3.reaches(1, 0x9000000) and not H3.reaches(1, 0xB000000)
    assert not H3.reaches(4, 0)


def test_parse_time() -> None:
    assert parse_time("2026-11-21 13:08:06+00") == datetime(2026, 11, 21, 13, 8, 6, tzinfo=UTC)
    assert parse_time("2026-11-21T13:08:06.5+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(UsageError, match="time zone"):
        parse_time("2026-11-21 13:08:06")
    with pytest.raises(UsageError, match="not a timestamp"):
        parse_time("yesterday")
