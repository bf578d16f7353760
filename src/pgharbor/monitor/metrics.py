"""Prometheus metrics of the fleet: :func:`gather` reads the catalog and each active
cluster's primary (the check services' queries) into a :class:`Snapshot`;
:func:`families` turns it into metric families; :class:`FleetCollector` caches them for
``ttl`` seconds (target probes for ``target_ttl``) so that scrapes never hammer the
catalog, the primaries or the storage. A primary that does not answer is
``pgharbor_up{cluster} 0``, never a failed scrape.

Labels are bounded: cluster, target, timeline, standby, slot, kind, state, result,
wal_status, service, node — never a WAL name or a backup id. Other modules add
families with :func:`register` (restore drills: ``register(drill_families)``, a function
of the :class:`Services` that yields metric families).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgharbor.catalog import stats
from pgharbor.catalog.jobs import JobRepo
from pgharbor.domain import cron
from pgharbor.domain.gaps import LOST, PENDING
from pgharbor.model import Cluster
from pgharbor.monitor import archive, replication
from pgharbor.monitor.fleet import check_timeline
from pgharbor.monitor.primary import rows
from pgharbor.monitor.registry import Probe
from pgharbor.monitor.result import Item
from pgharbor.scheduler.tick import effective
from pgharbor.services import health
from pgharbor.services import status as status_service
from pgharbor.services.context import Services

Extra = Callable[[Services], Iterable[Metric]]
EXTRAS: list[Extra] = []


def register(extra: Extra) -> None:
    """Add metric families computed by another module (drills), cached with the rest."""
    if extra not in EXTRAS:
        EXTRAS.append(extra)


@dataclass
class ClusterSnap:
    name: str
    status: status_service.ClusterStatus
    missing: dict[str, int]  # per target: archived files without an ok copy there
    below_required: int
    up: bool = False
    error: str | None = None
    archiver: dict[str, Any] | None = None
    lag: list[dict[str, Any]] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)
    timeline: int | None = None
    foreign_segments: float | None = None
    timeline_last: dict[int, datetime] = field(default_factory=dict)


@dataclass
class Snapshot:
    at: datetime
    clusters: list[ClusterSnap]
    targets: dict[str, health.TargetCheck]
    stored: list[tuple[str, str, str, int]]
    job_counts: list[tuple[str, str, str, int]]
    last_jobs: list[stats.LastJob]
    next_runs: list[tuple[str, str, datetime]]
    nodes: list[tuple[str, datetime]]
    check_states: list[tuple[str, str, int]] = field(default_factory=list)


def _primary(probe: Probe, cluster: Cluster, snap: ClusterSnap) -> None:
    try:
        snap.archiver = rows(probe, cluster, archive.QUERY)[0]
        snap.lag = rows(probe, cluster, replication.LAG)
        snap.slots = rows(probe, cluster, replication.SLOTS)
        check_timeline(probe, cluster)
        tli = [m.value for m in probe.item.metrics if m.label == "cluster_tli"]
        snap.timeline = int(tli[0]) if tli and tli[0] is not None else None
        foreign = [m.value for m in probe.item.metrics if m.label == "foreign_segments"]
        snap.foreign_segments = foreign[0] if foreign else None
        snap.up = True
    except Exception as exc:  # down, in recovery, refused: up 0, the rest from the catalog
        snap.error = " ".join(str(exc).split())[:200]


def _cluster(svc: Services, cluster: Cluster, cache: dict[str, Any]) -> ClusterSnap:
    st = status_service.cluster_status(svc, cluster.name)
    files = svc.catalog.wal_files(cluster.name)
    cache[f"files:{cluster.name}"] = files  # the timeline check reads them
    active = [p.target for p in svc.catalog.placements(cluster.name) if p.active]
    missing = {t: sum(t in f.missing for f in files) for t in active}
    short = sum(len(active) - len(f.missing) < cluster.required_copies for f in files)
    snap = ClusterSnap(cluster.name, st, missing, short)
    for f in files:
        at = max((c.archived_at for c in f.copies if c.status == "ok"), default=None)
        if at is not None and at > snap.timeline_last.get(f.timeline, at - timedelta(1)):
            snap.timeline_last[f.timeline] = at
    probe = Probe(svc, {}, {}, Item(cluster.name), cache=cache)
    _primary(probe, cluster, snap)
    return snap


def _next_runs(svc: Services, now: datetime) -> list[tuple[str, str, datetime]]:
    repo = JobRepo(svc.catalog)
    schedules = repo.schedules()
    out = []
    for c in repo.clusters():
        for kind, s in sorted(effective(schedules, c.id).items()):
            try:
                found = cron.next_fires(s.cron, s.timezone, now, 1)
            except Exception:
                continue
            if found:
                out.append((c.name, kind, found[0]))
    return out


def gather(svc: Services, targets: dict[str, health.TargetCheck] | None = None) -> Snapshot:
    """Everything the metrics show; ``targets``: target probes to reuse (None: probe)."""
    from pgharbor.monitor import events  # the check states serve and check runs keep

    now = datetime.now(UTC)
    cat = svc.catalog
    cache: dict[str, Any] = {}
    try:
        snaps = [_cluster(svc, c, cache) for c in cat.clusters() if c.active]
    finally:
        for conn in cache.pop("close", []):
            conn.close()
    if targets is None:
        targets = {t.name: health.check_target(svc, t) for t in cat.targets()}
    return Snapshot(
        now,
        snaps,
        targets,
        stats.stored_bytes(cat),
        stats.job_counts(cat),
        stats.last_jobs(cat),
        _next_runs(svc, now),
        stats.node_heartbeats(cat),
        events.states(svc),
    )


def _ts(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt is not None else None


class _Families:
    """Gauges and counters by name, declared on first use, in a stable order."""

    def __init__(self) -> None:
        self.out: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(
        self,
        name: str,
        doc: str,
        labels: dict[str, str],
        value: float | None,
        counter: bool = False,
    ) -> None:
        fam = self.out.get(name)
        if fam is None:
            cls = CounterMetricFamily if counter else GaugeMetricFamily
            fam = self.out[name] = cls(name, doc, labels=list(labels))
        if value is not None:
            fam.add_metric(list(labels.values()), float(value))


def _cluster_families(f: _Families, c: ClusterSnap) -> None:
    cl = {"cluster": c.name}
    st = c.status
    f.add(
        "pgharbor_up", "1 when the cluster's primary answers the monitoring queries", cl, int(c.up)
    )
    f.add("pgharbor_wal_files", "archived WAL files in the catalog", cl, st.files)
    f.add(
        "pgharbor_archive_last_archived_timestamp_seconds",
        "when the newest archived WAL file got its first good copy",
        cl,
        _ts(st.last_archived_at),
    )
    a = c.archiver or {}
    waiting_age = None
    if a:
        oldest = a["oldest"]
        waiting_age = max((a["now"] - oldest).total_seconds(), 0.0) if oldest else 0.0
        failed, last = a["last_failed_time"], a["last_archived_time"]
        failing = failed is not None and (last is None or failed > last)
    f.add(
        "pgharbor_archive_waiting_files",
        "files waiting to be archived (.ready) on the primary",
        cl,
        a.get("waiting"),
    )
    f.add(
        "pgharbor_archive_waiting_bytes",
        "WAL segments waiting to be archived x the segment size",
        cl,
        int(a["segments"]) * int(a["seg"]) if a else None,
    )
    f.add(
        "pgharbor_archive_waiting_age_seconds",
        "age of the oldest WAL file waiting (0: none)",
        cl,
        waiting_age,
    )
    f.add(
        "pgharbor_archive_failures_total",
        "failed archive attempts since the primary's statistics reset (pg_stat_archiver)",
        cl,
        a.get("failed_count"),
        counter=True,
    )
    f.add(
        "pgharbor_archive_failing",
        "1 when the primary's last archive attempt failed",
        cl,
        int(failing) if a else None,
    )


def _catalog_families(f: _Families, c: ClusterSnap) -> None:
    cl = {"cluster": c.name}
    st = c.status
    for t, n in sorted(c.missing.items()):
        f.add(
            "pgharbor_wal_missing_copies",
            "archived WAL files an active placement's target lacks",
            {**cl, "target": t},
            n,
        )
    f.add(
        "pgharbor_wal_below_required_copies",
        "archived WAL files with fewer copies than required",
        cl,
        c.below_required,
    )
    gaps = {PENDING: 0, LOST: 0, "acknowledged": 0}
    for g in st.gaps:
        key = "acknowledged" if g.state == LOST and g.acked else g.state
        gaps[key] = gaps.get(key, 0) + g.segments
    for state, n in gaps.items():
        f.add(
            "pgharbor_wal_gap_segments",
            "missing WAL segments recorded by verification, by state",
            {**cl, "state": state},
            n,
        )
    b = st.backups
    f.add(
        "pgharbor_backup_last_success_timestamp_seconds",
        "end of the newest usable backup",
        cl,
        _ts(b.newest_stop_time) if b else None,
    )
    f.add("pgharbor_backups_usable", "usable backups", cl, b.usable if b else 0)
    f.add("pgharbor_backups_failed", "failed backups kept in the catalog", cl, b.failed if b else 0)
    for w in st.windows:
        tl = {**cl, "timeline": str(w.timeline)}
        f.add(
            "pgharbor_recoverable_window_start_timestamp_seconds",
            "start of the recoverable window (its oldest usable backup's start)",
            tl,
            _ts(w.start_time),
        )
        f.add(
            "pgharbor_recoverable_window_end_timestamp_seconds",
            "end of the recoverable window (its last gap-free segment archived)",
            tl,
            _ts(w.end_archived_at),
        )
    f.add("pgharbor_timeline", "the primary's current timeline", cl, c.timeline)
    f.add(
        "pgharbor_timeline_foreign_segments",
        "segments of another timeline than the primary's archived lately",
        cl,
        c.foreign_segments,
    )
    for tli, at in sorted(c.timeline_last.items()):
        f.add(
            "pgharbor_timeline_last_archived_timestamp_seconds",
            "newest archived file per timeline",
            {**cl, "timeline": str(tli)},
            at.timestamp(),
        )


def _replication_families(f: _Families, c: ClusterSnap) -> None:
    cl = {"cluster": c.name}
    for r in c.lag:
        sb = {**cl, "standby": str(r["name"] or r["addr"] or "standby")}
        f.add(
            "pgharbor_replication_lag_bytes",
            "WAL bytes a standby has not replayed (current LSN - replay LSN)",
            sb,
            r["replay_bytes"],
        )
        f.add(
            "pgharbor_replication_flush_lag_bytes",
            "WAL bytes a standby has not flushed",
            sb,
            r["flush_bytes"],
        )
        f.add(
            "pgharbor_replication_lag_seconds",
            "pg_stat_replication.replay_lag",
            sb,
            r["replay_s"] or 0.0,
        )
    f.add(
        "pgharbor_replication_standbys",
        "standbys connected to the primary",
        cl,
        len(c.lag) if c.up else None,
    )
    for r in c.slots:
        sl = {**cl, "slot": str(r["name"])}
        f.add(
            "pgharbor_slot_retained_bytes",
            "WAL a slot retains (current LSN - restart_lsn)",
            sl,
            r["retained"],
        )
        f.add(
            "pgharbor_slot_active",
            "1 when the slot's consumer is connected",
            sl,
            int(bool(r["active"])),
        )
        f.add(
            "pgharbor_slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot loses WAL (max_slot_wal_keep_size set)",
            sl,
            r["safe_wal_size"],
        )
        for ws in ("reserved", "extended", "unreserved", "lost"):
            f.add(
                "pgharbor_slot_wal_status",
                "1 for the slot's current wal_status",
                {**sl, "wal_status": ws},
                int(r["wal_status"] == ws),
            )


def _job_families(f: _Families, snap: Snapshot) -> None:
    for j in snap.last_jobs:
        lb = {"cluster": j.cluster, "kind": j.kind}
        dur = (
            (j.finished_at - j.started_at).total_seconds()
            if j.started_at and j.finished_at
            else None
        )
        f.add(
            "pgharbor_job_last_duration_seconds",
            "how long the latest finished job of a kind ran",
            lb,
            dur,
        )
        f.add(
            "pgharbor_job_last_success_timestamp_seconds",
            "when the latest successful job of a kind ended",
            lb,
            _ts(j.last_done_at),
        )
        f.add(
            "pgharbor_job_consecutive_failures",
            "failed runs since the last successful one",
            lb,
            j.failures,
        )
    for cl, kind, at in snap.next_runs:
        f.add(
            "pgharbor_schedule_next_run_timestamp_seconds",
            "next fire of the schedule in force",
            {"cluster": cl, "kind": kind},
            at.timestamp(),
        )
    for node, hb in snap.nodes:
        f.add(
            "pgharbor_node_heartbeat_timestamp_seconds",
            "a serve node's last heartbeat",
            {"node": node},
            hb.timestamp(),
        )


def families(snap: Snapshot) -> list[Metric]:
    f = _Families()
    for snap_c in snap.clusters:
        _cluster_families(f, snap_c)
        _catalog_families(f, snap_c)
        _replication_families(f, snap_c)
    for name, t in sorted(snap.targets.items()):
        tg = {"target": name}
        f.add(
            "pgharbor_target_up",
            "1 when the target is reachable, writable, durable, its claim intact",
            tg,
            int(not t.problems),
        )
        f.add(
            "pgharbor_target_free_bytes",
            "free space where the storage reports it",
            tg,
            t.free_bytes,
        )
        f.add(
            "pgharbor_target_size_bytes",
            "total space where the storage reports it",
            tg,
            t.total_bytes,
        )
    for cl, tname, kind, n in snap.stored:
        f.add(
            "pgharbor_target_stored_bytes",
            "bytes stored on a target, by cluster and kind (wal, backup)",
            {"cluster": cl, "target": tname, "kind": kind},
            n,
        )
    for cl, kind, result, n in snap.job_counts:
        f.add(
            "pgharbor_jobs_finished_total",
            "finished scheduler jobs by kind and result (done, failed, skipped, missed)",
            {"cluster": cl, "kind": kind, "result": result},
            n,
            counter=True,
        )
    _job_families(f, snap)
    for cl, service, check in snap.check_states:
        f.add(
            "pgharbor_check_state",
            "last state of a check (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
            {"cluster": cl, "service": service},
            check,
        )
    f.add(
        "pgharbor_scrape_timestamp_seconds",
        "when these values were computed (cached)",
        {},
        snap.at.timestamp(),
    )
    return list(f.out.values())


class FleetCollector(Collector):
    """The families of :func:`gather`, recomputed at most every ``ttl`` seconds (the
    targets every ``target_ttl``); one computation at a time."""

    def __init__(self, svc: Services, ttl: float = 10.0, target_ttl: float = 60.0) -> None:
        self.svc, self.ttl, self.target_ttl = svc, ttl, target_ttl
        self.lock = threading.Lock()
        self.cached: list[Metric] = []
        self.at = -1e18
        self.targets: dict[str, health.TargetCheck] | None = None
        self.targets_at = -1e18
        self.error: str | None = None

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            now = time.monotonic()
            if now - self.at >= self.ttl:
                self._refresh(now)
            out = list(self.cached)
        ok = GaugeMetricFamily(
            "pgharbor_metrics_ok", "1 when the catalog could be read for these metrics"
        )
        ok.add_metric([], 0.0 if self.error else 1.0)
        yield ok
        yield from out

    def _refresh(self, now: float) -> None:
        try:
            if self.targets is None or now - self.targets_at >= self.target_ttl:
                self.targets, self.targets_at = None, now
            snap = gather(self.svc, self.targets)
            self.targets = snap.targets
            out = families(snap)
            for extra in EXTRAS:
                out.extend(extra(self.svc))
            self.cached, self.error = out, None
        except Exception as exc:  # the catalog is away: the scrape says so, it does not fail
            self.cached, self.error = [], " ".join(str(exc).split())[:200]
        self.at = now


def _drills(svc: Services) -> Iterable[Metric]:
    from pgharbor.monitor.drill import drill_families

    return drill_families(svc)


register(_drills)
