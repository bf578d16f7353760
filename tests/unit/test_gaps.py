"""WAL gap detection (domain.gaps): table cases and hypothesis properties."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgharbor.domain.gaps import (
    LOST,
    PENDING,
    Run,
    Segment,
    backup_hit,
    expected_starts,
    next_slice,
    scan,
)
from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.wal import format_lsn, segment_name

SEG = 16 * 1024 * 1024
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=1)
NEW = NOW - timedelta(seconds=30)
H2 = TimelineHistory.parse(2, "1\t0/A000000\tx\n")  # 2 branched from 1 in segment 10
H3 = TimelineHistory.parse(3, "1\t0/A000000\tx\n2\t0/C800000\tx\n")  # 3 from 2 in 12
BOTH = ("t1", "t2")


def segs(tl: int, lo: int, hi: int, *, on: tuple[str, ...] = BOTH, at: datetime = OLD) -> dict:
    return {segment_name(tl, n, SEG): Segment(frozenset(on), at) for n in range(lo, hi + 1)}


def lsn(segno: int) -> str:
    return format_lsn(segno * SEG + 40)


def test_complete_archive_has_no_gap_and_no_lag() -> None:
    found = scan(segs(1, 3, 9), {1: 3}, BOTH, SEG, NOW, timedelta(minutes=5))
    assert found.expected == {1: (3, 9)}
    assert found.runs == [] and found.lag == []


@pytest.mark.parametrize(
    ("missing", "at", "grace", "want"),
    [
        ((5,), OLD, timedelta(minutes=5), [Run(1, 5, 5, LOST, OLD)]),
        ((5, 6, 7), OLD, timedelta(minutes=5), [Run(1, 5, 7, LOST, OLD)]),
        ((5,), NEW, timedelta(minutes=5), [Run(1, 5, 5, PENDING, NEW)]),
        ((5,), NEW, timedelta(0), [Run(1, 5, 5, LOST, NEW)]),
        ((4, 7), OLD, timedelta(0), [Run(1, 4, 4, LOST, OLD), Run(1, 7, 7, LOST, OLD)]),
        ((3,), OLD, timedelta(0), [Run(1, 3, 3, LOST, OLD)]),  # the backup's own start
    ],
)
def test_missing_runs_pending_then_lost(
    missing: tuple[int, ...], at: datetime, grace: timedelta, want: list[Run]
) -> None:
    s = segs(1, 3, 9, at=at)
    for n in missing:
        del s[segment_name(1, n, SEG)]
    assert scan(s, {1: 3}, BOTH, SEG, NOW, grace).runs == want


def test_a_segment_with_no_good_copy_is_missing_like_an_absent_one() -> None:
    s = segs(1, 3, 9)
    s[segment_name(1, 6, SEG)] = Segment(frozenset(), OLD)  # only failed/missing rows
    assert scan(s, {1: 3}, BOTH, SEG, NOW, timedelta(0)).runs == [Run(1, 6, 6, LOST, OLD)]


def test_segments_before_the_start_and_after_the_newest_are_not_expected() -> None:
    s = segs(1, 0, 1) | segs(1, 5, 9)  # 2..4 are gone, but the oldest backup starts at 5
    assert scan(s, {1: 5}, BOTH, SEG, NOW, timedelta(0)).runs == []
    trailing = segs(1, 5, 9) | {segment_name(1, 10, SEG): Segment(frozenset(), OLD)}
    assert scan(trailing, {1: 5}, BOTH, SEG, NOW, timedelta(0)).expected == {1: (5, 9)}


def test_placement_lag_lists_who_has_and_who_lacks() -> None:
    s = segs(1, 3, 6) | segs(1, 7, 7, on=("t2",))
    found = scan(s, {1: 3}, BOTH, SEG, NOW, timedelta(0))
    assert found.runs == []
    assert [(lag.name, lag.have, lag.lacking) for lag in found.lag] == [
        (segment_name(1, 7, SEG), ("t2",), ("t1",))
    ]
    # a copy on a placement that is no longer required is neither lag nor a source
    extra = scan(segs(1, 3, 4, on=("t1", "old")), {1: 3}, ("t1",), SEG, NOW, timedelta(0))
    assert extra.lag == []


def test_expected_starts_follow_the_timeline_history() -> None:
    hist = {2: H2, 3: H3}
    # a backup on 1 at segment 3: timeline 2 from its branch (10), 3 from its own (12)
    assert expected_starts([(1, lsn(3))], hist, {1, 2, 3}, SEG) == {1: 3, 2: 10, 3: 12}
    # a backup on 1 after 2 branched off (segment 11): 2 and 3 are not its descendants
    assert expected_starts([(1, lsn(11))], hist, {1, 2, 3}, SEG) == {1: 11}
    # a backup on 2: its ancestor 1 is not expected, 3 is
    assert expected_starts([(2, lsn(11))], hist, {1, 2, 3}, SEG) == {2: 11, 3: 12}
    # two backups: the lower start wins per timeline; timelines without files are left out
    assert expected_starts([(1, lsn(8)), (1, lsn(2))], hist, {1}, SEG) == {1: 2}


def test_a_gap_at_the_start_of_a_branch_is_found() -> None:
    s = segs(1, 3, 11) | segs(2, 11, 14)  # timeline 2's first segment (10) is missing
    starts = expected_starts([(1, lsn(3))], {2: H2}, {1, 2}, SEG)
    found = scan(s, starts, BOTH, SEG, NOW, timedelta(0))
    assert found.runs == [Run(2, 10, 10, LOST, OLD)]


def test_backup_hit() -> None:
    lost = [(1, 5, 6), (2, 20, 20)]
    assert backup_hit(1, 6, 9, lost) == (1, 5, 6)
    assert backup_hit(1, 7, 9, lost) is None
    assert backup_hit(2, 1, 19, lost) is None
    assert backup_hit(2, 20, 20, lost) == (2, 20, 20)


@given(
    st.sets(st.integers(0, 60), max_size=40),
    st.sets(st.integers(0, 60), max_size=10),
    st.integers(0, 60),
)
def test_every_missing_segment_is_in_exactly_one_run(
    present: set[int], lagging: set[int], start: int
) -> None:
    s = {
        segment_name(1, n, SEG): Segment(frozenset(("t1",) if n in lagging else BOTH), OLD)
        for n in present
    }
    found = scan(s, {1: start}, BOTH, SEG, NOW, timedelta(0))
    held = {n for n in present if n >= start}
    covered = [n for r in found.runs for n in range(r.first, r.last + 1)]
    assert len(covered) == len(set(covered))
    if not held:
        assert found.runs == [] and found.expected == {}
        return
    assert set(covered) == set(range(start, max(held) + 1)) - held
    assert all(r.state == LOST for r in found.runs)
    # runs are maximal: the segment after each run is held
    assert all(r.last + 1 in held for r in found.runs)
    assert {lag.name for lag in found.lag} == {segment_name(1, n, SEG) for n in held & lagging}


def test_next_slice() -> None:
    items = [f"n{i:02}" for i in range(10)]
    assert next_slice(items, "", None, 0) == items  # period 0: everything, every run
    assert next_slice(items, "", 3600, 36000) == ["n00"]
    assert next_slice(items, "n08", 7200, 36000) == ["n09", "n00"]  # wraps around
    assert next_slice(items, "n03", None, 240) == ["n04"]  # a first run: 1/24, at least 1
    assert next_slice(items, "", 10**6, 60) == items
    assert next_slice([], "x", 5, 60) == []


@given(st.integers(1, 300), st.integers(1, 10_000), st.integers(1, 60), st.integers(0, 10**6))
def test_every_item_is_read_within_the_period(n: int, interval: int, runs: int, j: int) -> None:
    period = interval * runs - j % interval  # ceil(period / interval) == runs
    items = [f"{i:05}" for i in range(n)]
    cursor, seen = "", set()
    for _ in range(math.ceil(period / interval)):
        picked = next_slice(items, cursor, interval, period)
        seen.update(picked)
        cursor = picked[-1]
    assert seen == set(items)
