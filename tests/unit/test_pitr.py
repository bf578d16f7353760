"""Backup choice for a recovery target, and timeline histories: table-driven."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.pitr import (
    ArchiveEnd,
    BackupPoint,
    RecoveryTarget,
    RestorePoint,
    archive_end,
    check_reachable,
    choose_backup,
    parse_time,
    record_end,
)
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


# restore points: "a" once on timeline 1 between b1 and b2; "twice" before b1 and between
# b1 and b2; "thrice" after b2 twice close together (no backup starts between them);
# "late" on timeline 1 after the branch to timeline 2 (not on timeline 2's history)
B1S = BackupPoint("b1", 1, "0/3000100", T0, 700, "0/2000028")
B2S = BackupPoint("b2", 1, "0/8000100", T0 + timedelta(hours=1), 900, "0/7000028")
B3S = BackupPoint("b3", 2, "0/C000100", T0 + timedelta(hours=2), 1200, "0/B000028")
POINTS = [
    RestorePoint("a", "0/5000090", 1),
    RestorePoint("twice", "0/1000090", 1),
    RestorePoint("twice", "0/6000090", 1),
    RestorePoint("thrice", "0/9000090", 1),
    RestorePoint("thrice", "0/9100090", 1),
    RestorePoint("late", "0/B500090", 1),
    RestorePoint("on2", "0/C800090", 2),
]


@pytest.mark.parametrize(
    ("name", "history", "expected"),
    [
        ("a", H1, "b1"),  # the newest backup b2 ends after it: the old choice failed here
        ("a", H2, "b1"),  # timeline 2 replays timeline 1 up to 0/A000000
        ("twice", H1, "b1"),  # the second one; b1 starts after the first
        ("on2", H2, "b3"),
        ("late", H1, "b2"),
    ],
)
def test_choose_backup_for_restore_point(
    name: str, history: TimelineHistory, expected: str
) -> None:
    target = RecoveryTarget("name", name)
    assert choose_backup([B1S, B2S, B3S], target, history, POINTS).id == expected


@pytest.mark.parametrize(
    ("name", "history", "message"),
    [
        ("nope", H1, "no restore point named 'nope'"),
        ("late", H2, "no restore point named 'late'"),  # after the branch point
        ("on2", H1, "no restore point named 'on2'"),
        ("thrice", H1, "no backup starts between 0/9000090 and 0/9100090"),
    ],
)
def test_restore_point_refused(name: str, history: TimelineHistory, message: str) -> None:
    with pytest.raises(NotFound, match=message):
        choose_backup([B1S, B2S, B3S], RecoveryTarget("name", name), history, POINTS)


def test_restore_point_before_every_backup() -> None:
    with pytest.raises(NotFound, match="no backup ends before"):
        choose_backup([B2S], RecoveryTarget("name", "a"), H1, POINTS)


SEG = 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("start", "total", "end"),
    [
        (0x015261F0, 98, 0x01526258),  # measured: pg_waldump start, pg_create_restore_point end
        (0x02000028, 98, 0x02000090),  # first record of a segment
        (0x01001FE0, 98, 0x01002000 + 24 + 72),  # runs across a page: a short header
        (0x01FFFFE0, 98, 0x02000000 + 40 + 72),  # across segments: the long header
        (0x01001FA0, 96, 0x01002000),  # ends exactly at a page boundary
    ],
)
def test_record_end(start: int, total: int, end: int) -> None:
    assert record_end(start, total, SEG) == end


ARCHIVED = [
    ("000000010000000000000003", T0),
    ("000000010000000000000004", T0 + timedelta(minutes=5)),
    ("00000001000000000000000A.partial", T0 + timedelta(minutes=9)),
    ("00000002.history", T0 + timedelta(minutes=9)),
    ("00000002000000000000000A", T0 + timedelta(minutes=10)),
    ("00000001000000000000000B", T0 + timedelta(minutes=20)),  # timeline 1 went on
]


def test_archive_end() -> None:
    assert archive_end(ARCHIVED, H1, SEG) == ArchiveEnd(
        "00000001000000000000000B", 0xC000000, T0 + timedelta(minutes=20)
    )
    end2 = archive_end(ARCHIVED, H2, SEG)
    assert end2 == ArchiveEnd("00000002000000000000000A", 0xB000000, T0 + timedelta(minutes=10))
    assert archive_end(ARCHIVED[3:4], H1, SEG) is None


@pytest.mark.parametrize(
    ("target", "point", "message"),
    [
        (RecoveryTarget("time", (T0 + timedelta(minutes=11)).isoformat()), None, "after the end"),
        (RecoveryTarget("lsn", "0/B000001"), None, "0/B000000"),
        (RecoveryTarget("name", "x"), 0xB000090, "restore point 'x' .0/B000090."),
    ],
)
def test_target_beyond_the_archive(target: RecoveryTarget, point: int | None, message: str) -> None:
    end = archive_end(ARCHIVED, H2, SEG)
    with pytest.raises(UsageError, match=message) as info:
        check_reachable(target, end, point)
    assert "00000002000000000000000A" in str(info.value) and "pg_switch_wal" in info.value.message


def test_target_within_the_archive() -> None:
    end = archive_end(ARCHIVED, H2, SEG)
    check_reachable(RecoveryTarget("time", (T0 + timedelta(minutes=10)).isoformat()), end, None)
    check_reachable(RecoveryTarget("lsn", "0/B000000"), end, None)
    check_reachable(RecoveryTarget("name", "x"), end, 0xA000090)
    check_reachable(RecoveryTarget(), None, None)  # the end of the archive: nothing to check
    with pytest.raises(NotFound, match="no archived WAL"):
        check_reachable(RecoveryTarget("lsn", "0/1"), None, None)


def test_scan_batches_overlap_and_runs_stop_at_gaps() -> None:
    from pgharbor.restore.points import BATCH, _batches, _runs

    assert _runs([3, 4, 5, 7, 8, 10]) == [[3, 4, 5], [7, 8], [10]]
    assert _batches([1]) == [[1]]
    run = list(range(1, 2 * BATCH + 1))
    batches = _batches(run)
    assert all(len(b) <= BATCH for b in batches)
    assert all(a[-1] == b[0] for a, b in itertools.pairwise(batches))  # overlap
    assert sorted({n for b in batches for n in b}) == run
    assert _batches(list(range(BATCH))) == [list(range(BATCH))]
