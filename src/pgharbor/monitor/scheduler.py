"""``scheduler``: a ``pgharbor serve`` node heartbeats, no job of the cluster fails
run after run, and the cluster (active: it archives) has an enabled backup schedule
in force (its own or the fleet default). From the catalog alone."""

from __future__ import annotations

from pgharbor.catalog import stats
from pgharbor.catalog.jobs import JobRepo
from pgharbor.model import Cluster
from pgharbor.monitor.registry import MetricSpec, Probe, service
from pgharbor.monitor.result import State, dur
from pgharbor.scheduler.tick import effective


@service(
    "scheduler",
    "a serve node alive, no job failing repeatedly, an enabled backup schedule",
    MetricSpec("node_age", "s", "1m", "5m", "since the freshest serve node's heartbeat"),
    MetricSpec("failures", "", "1", "2", "failed runs in a row of the worst job kind"),
    MetricSpec("backup_schedule", "", None, "1:", "1 when a backup schedule is in force"),
    MetricSpec("nodes", "", None, None, "serve nodes in the catalog"),
)
def check_scheduler(probe: Probe, cluster: Cluster) -> str:
    repo = JobRepo(probe.svc.catalog)
    if "sched:nodes" not in probe.cache:
        now = repo.db_now()
        beats = stats.node_heartbeats(probe.svc.catalog)
        probe.cache["sched:nodes"] = [(n, (now - t).total_seconds()) for n, t in beats]
        probe.cache["sched:jobs"] = stats.last_jobs(probe.svc.catalog)
        probe.cache["sched:schedules"] = repo.schedules()
    nodes: list[tuple[str, float]] = probe.cache["sched:nodes"]
    age = min((a for _, a in nodes), default=None)
    probe.measure("node_age", max(age, 0.0) if age is not None else None)
    probe.measure("nodes", len(nodes))
    if age is None:
        probe.problem(State.CRITICAL, "no serve node is running (pgharbor serve)")
    jobs = [j for j in probe.cache["sched:jobs"] if j.cluster == cluster.name]
    worst = max(jobs, key=lambda j: j.failures, default=None)
    probe.measure("failures", worst.failures if worst else 0)
    backup = "backup" in effective(probe.cache["sched:schedules"], cluster.id)
    if cluster.active:
        probe.measure("backup_schedule", int(backup), max=1)
    parts = [
        f"{len(nodes)} node(s), freshest heartbeat {dur(age)} ago" if age is not None else "no node"
    ]
    if worst and worst.failures:
        parts.append(f"{worst.kind} failed {worst.failures} time(s) in a row")
    parts.append("a backup schedule is in force" if backup else "no backup schedule")
    return "; ".join(parts)
