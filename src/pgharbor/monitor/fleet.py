"""Checks from the catalog (no target is listed): ``copies``, ``backup``, ``timeline``
(with the primary's current timeline), and ``targets`` (each placement's target probed)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pgharbor.catalog.models import WalFile
from pgharbor.domain.wal import WalKind, parse_name
from pgharbor.model import Cluster
from pgharbor.monitor.primary import rows
from pgharbor.monitor.registry import MetricSpec, Probe, service
from pgharbor.monitor.replication import label
from pgharbor.monitor.result import dur
from pgharbor.services import health
from pgharbor.services import status as status_service


def _files(probe: Probe, cluster: Cluster) -> list[WalFile]:
    key = f"files:{cluster.name}"
    if key not in probe.cache:
        probe.cache[key] = probe.svc.catalog.wal_files(cluster.name)
    files: list[WalFile] = probe.cache[key]
    return files


@service(
    "copies",
    "archived files missing a required copy, or a copy on any active placement",
    MetricSpec("missing_copies", "", "0", None, "files an active placement lacks"),
    MetricSpec("missing_required", "", None, "0", "files with fewer copies than required"),
)
def check_copies(probe: Probe, cluster: Cluster) -> str:
    files = _files(probe, cluster)
    active = [p.target for p in probe.svc.catalog.placements(cluster.name) if p.active]
    short = [f for f in files if len(active) - len(f.missing) < cluster.required_copies]
    missing = [f for f in files if f.missing]
    probe.measure("missing_copies", len(missing))
    probe.measure("missing_required", len(short))
    probe.measure("files", len(files))
    text = f"{len(files)} files; {len(missing)} missing a copy, {len(short)} below {cluster.required_copies} required"
    where = sorted({t for f in missing for t in f.missing})
    if missing:
        text += f" (first {min(f.name for f in missing)}; on {', '.join(where)})"
    return text


@service(
    "backup",
    "age of the newest usable backup, usable backups, the recoverable window",
    MetricSpec("backup_age", "s", "26h", "50h", "since the newest usable backup ended"),
    MetricSpec("backups", "", None, "1:", "usable backups"),
    MetricSpec("window", "s", None, None, "recoverable span on the newest timeline"),
)
def check_backup(probe: Probe, cluster: Cluster) -> str:
    st = status_service.cluster_status(probe.svc, cluster.name)
    b = st.backups
    newest = b.newest_stop_time if b else None
    age = (probe.now - newest).total_seconds() if newest else None
    probe.measure("backup_age", age)
    probe.measure("backups", b.usable if b else 0)
    w = max(st.windows, key=lambda w: w.timeline, default=None)
    span = None
    if w is not None and w.start_time is not None and w.end_archived_at is not None:
        span = max((w.end_archived_at - w.start_time).total_seconds(), 0.0)
    probe.measure("window", span)
    if not b or not b.newest:
        return "no usable backup"
    text = f"{b.usable} usable backup(s), newest {b.newest} ended {dur(age or 0)} ago"
    if span is not None and w is not None:
        text += f"; recoverable on timeline {w.timeline} over {dur(span)}"
    return text


def primary_timeline(probe: Probe, cluster: Cluster) -> int:
    found = rows(probe, cluster, "SELECT pg_walfile_name(pg_current_wal_lsn()) AS f")
    return int(found[0]["f"][:8], 16)


@service(
    "timeline",
    "segments on a timeline other than the primary's archived lately (two servers archive as one)",
    MetricSpec("foreign_segments", "", None, "0", "other-timeline segments archived lately"),
)
def check_timeline(probe: Probe, cluster: Cluster) -> str:
    current = primary_timeline(probe, cluster)
    first: dict[int, datetime] = {}
    seen: list[tuple[int, datetime]] = []
    for f in _files(probe, cluster):
        at = min((c.archived_at for c in f.copies if c.status == "ok"), default=None)
        if at is None:
            continue
        first[f.timeline] = min(first.get(f.timeline, at), at)
        if parse_name(f.name).kind is WalKind.SEGMENT:
            seen.append((f.timeline, at))
    since = probe.now - timedelta(seconds=probe.window)
    began = first.get(current)
    if began is not None and began > since:
        since = began
    foreign = [tli for tli, at in seen if tli != current and at > since]
    probe.measure("cluster_tli", current)
    probe.measure("archive_max_tli", max(first, default=current))
    probe.measure("foreign_segments", len(foreign))
    if foreign:
        tlis = ", ".join(str(t) for t in sorted(set(foreign)))
        return (
            f"timeline {tlis} is still growing in the archive while the primary is on "
            f"timeline {current}: another server archives as {cluster.name}"
        )
    others = sorted(t for t in first if t != current)
    text = f"the primary is on timeline {current}"
    return text + (f"; the archive also holds timeline(s) {others} (not growing)" if others else "")


@service(
    "targets",
    "each placement's target reachable, writable, durable, its claim intact, its free space",
    MetricSpec("up", "", None, "1:", "1 when the target passes every probe"),
    MetricSpec("free", "%", "20:", "10:", "free space, where the storage reports it"),
)
def check_targets(probe: Probe, cluster: Cluster) -> str:
    taken: set[str] = set()
    bad = []
    places = [p for p in probe.svc.catalog.placements(cluster.name) if p.active]
    for p in places:
        key = f"target:{p.target}"
        if key not in probe.cache:
            probe.cache[key] = health.check_target(probe.svc, probe.svc.catalog.target(p.target))
        r: health.TargetCheck = probe.cache[key]
        others = {f"{c.cluster}: {c.problem}" for c in r.clusters if c.cluster != cluster.name}
        problems = [x for x in r.problems if x not in others]
        lb = label(p.target, taken)
        probe.measure("up", 0 if problems else 1, f"{lb}_up", max=1)
        free = None
        if r.free_bytes is not None and r.total_bytes:
            free = round(100.0 * r.free_bytes / r.total_bytes, 1)
        probe.measure("free", free, f"{lb}_free", max=100)
        if problems:
            bad.append(f"{p.target}: {problems[0]}")
    if bad:
        return f"{len(bad)} of {len(places)} target(s) failing: " + "; ".join(bad)
    return f"{len(places)} target(s) up"
