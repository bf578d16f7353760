"""Schedules as cron expressions (pure: no I/O, no clock; the caller passes the time).

Standard 5-field cron only (minute hour day-of-month month day-of-week), evaluated by
cronsim in an IANA time zone with ISC/Debian cron DST rules (a time in the skipped hour
runs right after the change, a repeated hour runs once), plus the ``@hourly``-style
aliases. A 6-field value is refused: seconds-first (Quartz, robfig) and seconds-last
readings of the same text disagree, and reading one as the other turned daily backups
into hourly ones elsewhere (CloudNativePG PR#883).

``due()`` answers, for one schedule at one tick, which fire to run and which were
missed: fires after ``since`` up to ``now``; the newest one runs if it is at most
``grace`` old, every other one is missed (at most ``MAX_MISSED`` of them are listed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from pgharbor.errors import UsageError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_MISSED = 50  # missed fires listed per schedule and tick (older ones are not recorded)
LOOK_BACK = timedelta(days=31)  # how far back a tick looks for fires at most


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}", hint="an IANA name such as UTC or Europe/Berlin"
        ) from None


def parse(expr: str) -> str:
    """The 5-field expression ``expr`` stands for (an alias expanded), or UsageError."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise UsageError(
                f"unknown cron alias {text!r}", hint=f"one of {', '.join(sorted(ALIASES))}"
            )
        return ALIASES[text.lower()]
    fields = text.split(" ") if text else []
    if len(fields) == 6:
        raise UsageError(
            f"cron {expr!r} has 6 fields: only standard 5-field cron is accepted (minute "
            "hour day month weekday; no seconds field)",
            hint='e.g. "0 */2 * * *" for every two hours',
        )
    if len(fields) != 5:
        raise UsageError(
            f"cron {expr!r} has {len(fields)} field(s): standard cron has 5 "
            "(minute hour day month weekday)"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise UsageError(f"cron {expr!r} is not valid: {exc}") from None
    return text


def fires_after(expr: str, tz: str, after: datetime) -> Iterator[datetime]:
    """The fire times strictly after ``after`` (aware), in UTC, oldest first."""
    local = after.astimezone(zone(tz))
    for t in CronSim(parse(expr), local):
        t = t.astimezone(UTC)
        if t > after:  # cronsim starts at the next whole minute already
            yield t


def next_fires(expr: str, tz: str, after: datetime, count: int = 3) -> list[datetime]:
    out: list[datetime] = []
    for t in fires_after(expr, tz, after):
        out.append(t)
        if len(out) == count:
            break
    return out


@dataclass(frozen=True)
class Due:
    run: datetime | None = None  # the fire to run now
    missed: list[datetime] = field(default_factory=list)  # fires recorded as missed

    @property
    def empty(self) -> bool:
        return self.run is None and not self.missed


def due(expr: str, tz: str, since: datetime, now: datetime, grace: timedelta) -> Due:
    """The fires in (since, now]: the newest runs when at most ``grace`` late, the others
    are missed (the newest MAX_MISSED of them listed, oldest first)."""
    if now <= since:
        return Due()
    fires: list[datetime] = []
    for t in fires_after(expr, tz, max(since, now - LOOK_BACK)):
        if t > now:
            break
        fires.append(t)
        if len(fires) > MAX_MISSED + 1:
            del fires[0]
    if not fires:
        return Due()
    newest = fires[-1]
    if now - newest <= grace:
        return Due(newest, fires[:-1][-MAX_MISSED:])
    return Due(None, fires[-MAX_MISSED:])
