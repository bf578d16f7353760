"""``wal-gaps``: the gaps WAL verification recorded in the catalog (``pgharbor verify``,
the scheduler's ``verify`` job) — a catalog query, no target is listed. A pending gap
(a segment missing for less than the grace, perhaps still in flight) warns; a lost one
nobody acknowledged is critical; an acknowledged one is counted but does not alert (it
still shortens the recoverable window that ``backup`` and ``status`` report)."""

from __future__ import annotations

from pgharbor.catalog.gaps import GapRepo
from pgharbor.domain.gaps import LOST, PENDING
from pgharbor.model import Cluster
from pgharbor.monitor.registry import MetricSpec, Probe, service
from pgharbor.monitor.result import dur


@service(
    "wal-gaps",
    "missing WAL recorded by verification: pending, lost (unacknowledged), acknowledged",
    MetricSpec("pending_segments", "", "0", None, "segments missing, within the grace"),
    MetricSpec("lost_segments", "", None, "0", "segments lost, not acknowledged"),
    MetricSpec("acked_segments", "", None, None, "segments lost and acknowledged"),
    MetricSpec("verify_age", "s", None, None, "since the last verification run"),
)
def check_gaps(probe: Probe, cluster: Cluster) -> str:
    repo = GapRepo(probe.svc.catalog)
    gaps = repo.gaps(cluster.id, states=(PENDING, LOST))
    pending = [g for g in gaps if g.state == PENDING]
    lost = [g for g in gaps if g.state == LOST and not g.acked]
    acked = [g for g in gaps if g.state == LOST and g.acked]
    probe.measure("pending_segments", sum(g.segments for g in pending))
    probe.measure("lost_segments", sum(g.segments for g in lost))
    probe.measure("acked_segments", sum(g.segments for g in acked))
    last_run = repo.cursor(cluster.id)[2]
    age = (probe.now - last_run).total_seconds() if last_run else None
    probe.measure("verify_age", age)
    if last_run is None:
        return "never verified (pgharbor verify, or a verify schedule)"
    text = f"verified {dur(age or 0)} ago"
    if not gaps:
        return f"{text}; no gap"
    parts = []
    for what, found in (("lost", lost), ("pending", pending), ("acknowledged", acked)):
        if found:
            first = min(found, key=lambda g: (g.timeline, g.first_segment))
            parts.append(f"{len(found)} {what} (first {first.first_segment})")
    return f"{text}; " + ", ".join(parts)
