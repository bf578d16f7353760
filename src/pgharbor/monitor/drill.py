"""``drill``: restore drills recorded in the catalog (``pgharbor drill run``, the
scheduler's ``drill`` job) — a catalog query. The latest drill failed: CRITICAL; the
newest successful one older than the thresholds (default 8 and 15 days, for a weekly
drill): WARNING / CRITICAL. A cluster never drilled is OK, with the text saying so (a
cluster without a drill schedule is not an alert; give it a schedule to be watched)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from pgharbor.model import Cluster
from pgharbor.monitor.registry import MetricSpec, Probe, service
from pgharbor.monitor.result import State, dur
from pgharbor.services import drills
from pgharbor.services.context import Services


@service(
    "drill",
    "restore drills: the latest one's outcome, the age of the newest successful one",
    MetricSpec("drill_age", "s", "8d", "15d", "since the newest successful drill finished"),
    MetricSpec("drill_rto", "s", None, None, "the newest successful drill's total time"),
)
def check_drill(probe: Probe, cluster: Cluster) -> str:
    s = drills.summary(probe.svc, cluster.name)
    good, latest = s.last_success, s.latest
    if latest is not None and not latest.ok:
        probe.problem(
            State.CRITICAL,
            f"the latest drill ({latest.id}) failed: {latest.error or 'see drill list'}",
        )
    if good is None or good.finished_at is None:
        return "never passed a drill (pgharbor drill run, or a drill schedule)"
    age = (probe.now - good.finished_at).total_seconds()
    probe.measure("drill_age", age)
    probe.measure("drill_rto", good.total_s)
    return (
        f"last proven recoverable {dur(age)} ago (drill {good.id}, backup {good.backup_id}, "
        f"RTO {good.total_s or 0:.1f}s)"
    )


def drill_families(svc: Services) -> list[Metric]:
    """The drill metrics of ``GET /metrics`` (registered in monitor.metrics): per cluster,
    when the newest successful drill finished, the latest drill's outcome (1 ok, 0
    failed) and its duration by phase (restore, recovery, total, and each check)."""
    success = GaugeMetricFamily(
        "pgharbor_drill_last_success_timestamp_seconds",
        "When the newest successful restore drill finished (Unix time).",
        labels=["cluster"],
    )
    result = GaugeMetricFamily(
        "pgharbor_drill_last_result",
        "The latest restore drill's outcome: 1 passed, 0 failed.",
        labels=["cluster"],
    )
    duration = GaugeMetricFamily(
        "pgharbor_drill_last_duration_seconds",
        "The latest restore drill's duration by phase (restore, recovery, total, checks).",
        labels=["cluster", "phase"],
    )
    for s in drills.newest_per_cluster(svc):
        good, latest = s.last_success, s.latest
        if good is not None and good.finished_at is not None:
            success.add_metric([s.cluster], good.finished_at.timestamp())
        if latest is None:
            continue
        result.add_metric([s.cluster], 1.0 if latest.ok else 0.0)
        phases = {"restore": latest.restore_s, "recovery": latest.recovery_s}
        phases["total"] = latest.total_s
        phases.update({f"check_{c.name}": c.seconds for c in latest.checks})
        for phase, seconds in phases.items():
            if seconds is not None:
                duration.add_metric([s.cluster, phase], float(seconds))
    return [success, result, duration]
