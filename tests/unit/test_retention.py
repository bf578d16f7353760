"""The retention plan (domain.retention): table-driven cases and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.retention import BackupState, Hold, Policy, expire_wal, plan
from pgharbor.domain.wal import parse_name, segment_name

SEG = 16 * 1024 * 1024
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
H2 = TimelineHistory.parse(2, "1\t0/A000000\tx\n")  # 2 branched from 1 in segment 10
H3 = TimelineHistory.parse(3, "1\t0/4000000\tx\n")  # 3 branched from 1 in segment 4
H4 = TimelineHistory.parse(4, "1\t0/A000000\tx\n2\t0/C000000\tx\n")  # 4 from 2 in 12


def b(
    i: int,
    hours_ago: float,
    *,
    seg: int | None = None,
    status: str = "ok",
    tl: int = 1,
    hold: Hold | None = None,
) -> BackupState:
    stop = NOW - timedelta(hours=hours_ago)
    start_seg = seg if seg is not None else i * 2
    return BackupState(
        f"b{i}", status, tl, start_seg * SEG + 40, stop, stop - timedelta(minutes=5), hold
    )


def names(tl: int, lo: int, hi: int) -> list[str]:
    return [segment_name(tl, s, SEG) for s in range(lo, hi + 1)]


FIVE = [b(1, 50), b(2, 40), b(3, 30), b(4, 20), b(5, 10)]


def actions(p: object) -> dict[str, str]:
    return {v.id: v.action for v in p.backups}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("policy", "backups", "expected"),
    [
        (
            Policy(keep_last=2),
            FIVE,
            {
                "b1": "delete",
                "b2": "delete",
                "b3": "delete",
                "b4": "keep (keep-last)",
                "b5": "keep (min-backups, keep-last)",
            },
        ),
        (
            Policy(keep_last=1, min_backups=3),
            FIVE,
            {"b1": "delete", "b2": "delete", "b3": "keep (min-backups)"}
            | {"b4": "keep (min-backups)", "b5": "keep (min-backups, keep-last)"},
        ),
        (  # 25 h window: b4 and b5 stopped inside it, b3 is the anchor before it
            Policy(recovery_window=timedelta(hours=25)),
            FIVE,
            {"b1": "delete", "b2": "delete", "b3": "keep (window-anchor)"}
            | {"b4": "keep (window)", "b5": "keep (min-backups, window)"},
        ),
        (
            Policy(keep_last=1),
            [b(1, 50, hold=Hold(None, "audit")), b(2, 40, hold=Hold(NOW, "lapsed")), b(3, 1)],
            {"b1": "keep (hold)", "b2": "delete", "b3": "keep (min-backups, keep-last)"},
        ),
        (  # never deleted: a running one; failed and left-expiring ones go
            Policy(keep_last=1),
            [
                b(1, 50, status="failed"),
                b(2, 40, status="expiring"),
                b(3, 30),
                b(4, 1, status="running"),
            ],
            {"b1": "delete", "b2": "delete", "b3": "keep (min-backups, keep-last)"}
            | {"b4": "keep (running)"},
        ),
        (  # order is the stop time, not the id or the WAL position
            Policy(keep_last=1),
            [b(9, 1, seg=2), b(1, 5, seg=40, tl=2)],
            {"b9": "keep (min-backups, keep-last)", "b1": "delete"},
        ),
    ],
)
def test_backup_verdicts(
    policy: Policy, backups: list[BackupState], expected: dict[str, str]
) -> None:
    p = plan(backups, policy, NOW, [], {}, SEG)
    assert actions(p) == expected


def test_delete_reasons_and_in_use() -> None:
    p = plan(FIVE, Policy(keep_last=1), NOW, [], {}, SEG, in_use=frozenset({"b2"}))
    assert actions(p)["b2"] == "keep (in-use)"
    assert {v.id: v.why_delete for v in p.delete} == {
        "b1": "no rule",
        "b3": "no rule",
        "b4": "no rule",
    }


def test_refusals_and_guards() -> None:
    assert plan(FIVE, Policy(), NOW, [], {}, SEG).refusals  # no policy: refused
    only_failed = plan([b(1, 5, status="failed")], Policy(keep_last=1), NOW, [], {}, SEG)
    assert only_failed.refusals and not only_failed.wal_delete
    assert plan(FIVE, Policy(keep_last=2), NOW, [], {}, SEG).guards  # 3 of 5
    assert not plan(FIVE, Policy(keep_last=3), NOW, [], {}, SEG).guards  # 2 of 5


def test_gap_in_the_window_is_a_guard() -> None:
    wal = names(1, 0, 12)
    policy = Policy(keep_last=3, recovery_window=timedelta(hours=25))
    assert not plan(FIVE, policy, NOW, wal, {}, SEG).guards
    holed = [n for n in wal if n != segment_name(1, 7, SEG)]  # b3 (the anchor) starts in 6
    assert plan(FIVE, policy, NOW, holed, {}, SEG).guards
    old_hole = [n for n in wal if n != segment_name(1, 3, SEG)]  # before the anchor
    assert not plan(FIVE, policy, NOW, old_hole, {}, SEG).guards
    # a lost gap a human acknowledged (wal gaps ack) passes; only on its own timeline
    # and range: another hole beside it still stops the run
    assert not plan(FIVE, policy, NOW, holed, {}, SEG, acknowledged=[(1, 7, 7)]).guards
    assert plan(FIVE, policy, NOW, holed, {}, SEG, acknowledged=[(2, 7, 7)]).guards
    two_holes = [n for n in holed if n != segment_name(1, 9, SEG)]
    assert plan(FIVE, policy, NOW, two_holes, {}, SEG, acknowledged=[(1, 7, 8)]).guards


def test_wal_per_timeline() -> None:
    kept = [b(1, 5, seg=6)]  # timeline 1, from segment 6
    wal = names(1, 2, 14) + names(2, 10, 13) + names(3, 4, 8) + names(4, 12, 13) + names(5, 1, 3)
    wal += ["00000002.history", "00000003.history", "00000004.history", "00000005.history"]
    wal.append(segment_name(1, 5, SEG) + ".00000028.backup")
    deleted, per, history = expire_wal(kept, wal, {2: H2, 3: H3, 4: H4}, SEG)
    # timeline 1 below segment 6 goes; 2 and 4 descend from 1 after 6: all kept;
    # 3 descends from 1 too: its segments from 6 on are kept; 5 has no history: all kept
    backup_file = segment_name(1, 5, SEG) + ".00000028.backup"
    assert deleted == [*names(1, 2, 5), backup_file, *names(3, 4, 5)]
    assert {t.timeline: (t.kept, t.deleted) for t in per} == {
        1: (9, 5),
        2: (4, 0),
        3: (3, 2),
        4: (2, 0),
        5: (3, 0),
    }
    assert history == [2, 3, 4, 5]  # 5 has kept files: its history is needed too
    assert not any(n.endswith(".history") for n in deleted)


def test_wal_of_a_backup_on_a_later_timeline_spares_its_ancestor_after_it() -> None:
    kept = [b(1, 5, seg=12, tl=2)]
    wal = names(1, 8, 14) + names(2, 10, 14)
    deleted, _, history = expire_wal(kept, wal, {2: H2}, SEG)
    # timeline 1 is not a descendant of 2: none of it is needed by a backup on 2 from 12
    assert deleted == names(1, 8, 14) + names(2, 10, 11)
    assert history == [2]


# -- properties -------------------------------------------------------------------------

STATUSES = st.sampled_from(["ok", "ok", "ok", "running", "failed", "expiring"])
HISTORIES = {2: H2, 3: H3, 4: H4}


@st.composite
def states(draw: st.DrawFn) -> tuple[list[BackupState], Policy, list[str]]:
    n = draw(st.integers(0, 9))
    backups = []
    for i in range(n):
        hold = draw(st.sampled_from([None, Hold(None, "x"), Hold(NOW - timedelta(hours=1), "y")]))
        backups.append(
            BackupState(
                f"b{i}",
                draw(STATUSES),
                draw(st.sampled_from([1, 1, 2, 3, 4])),
                draw(st.integers(0, 20)) * SEG + draw(st.integers(0, SEG - 1)),
                NOW - timedelta(hours=draw(st.integers(0, 100))),
                NOW - timedelta(hours=101),
                hold,
            )
        )
    policy = Policy(
        draw(st.none() | st.integers(1, 5)),
        draw(st.none() | st.integers(1, 80).map(lambda h: timedelta(hours=h))),
        draw(st.integers(1, 4)),
    )
    wal = [
        segment_name(t, s, SEG)
        for t in (1, 2, 3, 4)
        for s in range(22)
        if draw(st.booleans()) or t == 1
    ]
    return backups, policy, wal


@settings(max_examples=300, deadline=None)
@given(states())
def test_properties(state: tuple[list[BackupState], Policy, list[str]]) -> None:
    backups, policy, wal = state
    p = plan(backups, policy, NOW, wal, HISTORIES, SEG)
    verdict = {v.id: v for v in p.backups}
    assert set(verdict) == {x.id for x in backups}
    usable = sorted(
        (x for x in backups if x.status == "ok"), key=lambda x: (x.stop_time, x.id), reverse=True
    )
    for x in backups:  # never deleted: running, held
        if x.status == "running" or (x.status == "ok" and x.hold and x.hold.active(NOW)):
            assert verdict[x.id].keep
    for x in usable[: policy.min_backups]:  # min-backups (and so the newest) always kept
        assert "min-backups" in verdict[x.id].rules
    if policy.recovery_window is not None:  # the anchor before the window is kept
        start = NOW - policy.recovery_window
        before = [x for x in usable if x.stop_time is not None and x.stop_time < start]
        if before:
            assert "window-anchor" in verdict[before[0].id].rules
    if not usable:
        assert p.refusals and not p.wal_delete
    # deleting never takes a file a kept backup needs: on its timeline from its start
    # segment, and on each descendant timeline (compared within that timeline only)
    gone = set(p.wal_delete)
    needed: set[str] = set()
    for x in backups:
        if verdict[x.id].keep and x.status in ("ok", "running") and not p.refusals:
            first = (x.start_lsn or 0) // SEG
            for name in wal:
                w = parse_name(name)
                related = (
                    w.timeline == x.timeline
                    or x.timeline in HISTORIES.get(w.timeline, TimelineHistory(w.timeline)).ends
                )
                if related and w.segno(SEG) >= first:
                    needed.add(name)
    assert not gone & needed
    # and nothing else is kept: the WAL only deleted backups needed (or none) goes
    if not p.refusals:
        assert gone == set(wal) - needed
    # the plan is a function of its inputs: the same inputs, the same plan
    assert plan(list(reversed(backups)), policy, NOW, list(reversed(wal)), HISTORIES, SEG) == p
