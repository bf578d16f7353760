"""domain.cron: standard 5-field cron only, aliases, IANA zones with ISC cron DST rules,
and which fires a tick runs or records as missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgharbor.domain import cron
from pgharbor.errors import UsageError


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "expanded"),
    [
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("0   */2 * * *", "0 */2 * * *"),
        ("30 4 * * mon-fri", "30 4 * * mon-fri"),
    ],
)
def test_parse(expr: str, expanded: str) -> None:
    assert cron.parse(expr) == expanded


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 0 * * *", "6 fields: only standard 5-field cron"),
        ("* * * * * 2026", "6 fields"),
        ("* * * *", "4 field(s)"),
        ("", "0 field(s)"),
        ("61 * * * *", "not valid"),
        ("@fortnightly", "unknown cron alias"),
    ],
)
def test_refusals(expr: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cron.parse(expr)


def test_unknown_zone() -> None:
    with pytest.raises(UsageError, match="unknown time zone"):
        cron.next_fires("@daily", "Europe/Atlantis", utc(2026, 1, 1))


def test_the_seed_deployment_every_two_hours() -> None:
    assert cron.next_fires("0 */2 * * *", "UTC", utc(2026, 12, 2, 3, 21)) == [
        utc(2026, 12, 2, 4),
        utc(2026, 12, 2, 6),
        utc(2026, 12, 2, 8),
    ]


def test_a_fire_time_itself_is_not_after_it() -> None:
    assert cron.next_fires("0 * * * *", "UTC", utc(2026, 1, 1, 5), 1) == [utc(2026, 1, 1, 6)]


def test_time_zone_and_dst_spring_forward() -> None:
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29: a 02:30 job runs right after (ISC
    # cron), i.e. 03:00 CEST = 01:00 UTC; the day before 02:30 CET = 01:30 UTC
    fires = cron.next_fires("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), 3)
    assert fires == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]


def test_dst_fall_back_runs_the_repeated_hour_once() -> None:
    # 02:30 happens twice in Berlin on 2026-10-25: the job runs once
    fires = cron.next_fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2)
    assert len(fires) == 2
    assert fires[0].date() == datetime(2026, 10, 25).date()
    assert fires[1] - fires[0] >= timedelta(hours=24)


def test_due_runs_the_newest_fire_and_misses_the_older_ones() -> None:
    since, now = utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 5, 30)
    d = cron.due("* * * * *", "UTC", since, now, timedelta(minutes=1))
    assert d.run == utc(2026, 1, 1, 0, 5)
    assert d.missed == [utc(2026, 1, 1, 0, m) for m in (1, 2, 3, 4)]


def test_due_beyond_grace_runs_nothing() -> None:
    since, now = utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 3, 30)
    d = cron.due("0 * * * *", "UTC", since, now, timedelta(minutes=10))
    assert d.run is None
    assert d.missed == [utc(2026, 1, 1, h) for h in (1, 2, 3)]


def test_due_nothing_new_and_missed_are_capped() -> None:
    assert cron.due(
        "0 * * * *", "UTC", utc(2026, 1, 1, 1), utc(2026, 1, 1, 1, 59), timedelta(0)
    ).empty
    assert cron.due("* * * * *", "UTC", utc(2026, 1, 2), utc(2026, 1, 1), timedelta(0)).empty
    d = cron.due("* * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 2), timedelta(hours=1))
    assert d.run == utc(2026, 1, 2)
    assert len(d.missed) == cron.MAX_MISSED
    assert d.missed[-1] == utc(2026, 1, 1, 23, 59)
