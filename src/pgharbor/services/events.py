"""events: the state changes the checks and the scheduler recorded (monitor/events.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pgharbor.catalog.events import Event, EventRepo
from pgharbor.domain.pitr import parse_time
from pgharbor.monitor.thresholds import number
from pgharbor.services.context import Services

_AGO = re.compile(r"^\d+(\.\d*)?(s|m|min|h|d|w)$")


def since_time(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: a timestamp with a time zone, or how long ago (``30m``, ``2h``, ``7d``)."""
    if text is None:
        return None
    if _AGO.match(text.strip()):
        return (now or datetime.now(UTC)) - timedelta(seconds=number(text, "s"))
    return parse_time(text)


def list_events(
    svc: Services, cluster: str | None = None, since: str | None = None, limit: int = 1000
) -> list[Event]:
    """The newest ``limit`` events (of ``cluster``; from ``since``), oldest first."""
    after = since_time(since)
    cluster_id = svc.catalog.cluster(cluster).id if cluster else None
    return EventRepo(svc.catalog).events(cluster_id, after, limit)
