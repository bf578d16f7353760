"""``replication-lag`` and ``replication-slots``, from the primary's own views.

Lag is judged in bytes (the primary's current LSN minus what the standby replayed); the
seconds of pg_stat_replication are reported but not reliable on an idle primary. A slot
is judged by the WAL it retains, its ``wal_status`` (``unreserved`` WARNING, ``lost``
CRITICAL), its ``safe_wal_size`` and how long it has been inactive (PostgreSQL 15 keeps
no such time: the first check that saw it inactive records it in the state folder)."""

from __future__ import annotations

import os
import re
import time

from nagiosplugin import Cookie

from pgharbor.model import Cluster
from pgharbor.monitor.primary import rows
from pgharbor.monitor.registry import MetricSpec, Probe, service
from pgharbor.monitor.result import State

LAG = """
SELECT application_name AS name, client_addr::text AS addr, state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint AS flush_bytes,
       extract(epoch FROM replay_lag)::float8 AS replay_s
FROM pg_stat_replication ORDER BY application_name, pid
"""
SLOTS = """
SELECT slot_name AS name, slot_type, active, wal_status, safe_wal_size,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained
FROM pg_replication_slots ORDER BY slot_name
"""


def label(name: str, taken: set[str]) -> str:
    """A perfdata label from a standby's or slot's name: ``[A-Za-z0-9_]``, unique."""
    base = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")[:19] or "x"
    out, n = base, 2
    while out in taken:
        out, n = f"{base}{n}", n + 1
    taken.add(out)
    return out


@service(
    "replication-lag",
    "per standby: WAL bytes not yet replayed (judged) and replay lag seconds",
    MetricSpec("lag", "B", "64MB", "1GB", "bytes from the current LSN to the replayed one"),
    MetricSpec("lag_s", "s", None, None, "pg_stat_replication.replay_lag"),
    MetricSpec("standbys", "", None, None, "connected standbys (e.g. -c standbys=1:)"),
)
def check_lag(probe: Probe, cluster: Cluster) -> str:
    found = rows(probe, cluster, LAG)
    taken: set[str] = set()
    parts = []
    for r in found:
        lb = label(r["name"] or r["addr"] or "standby", taken)
        probe.measure("lag", r["replay_bytes"], f"{lb}_lag")
        probe.measure("lag", r["flush_bytes"], f"{lb}_flush_lag")
        probe.measure("lag_s", r["replay_s"], f"{lb}_lag_s")
        parts.append(f"{r['name'] or r['addr']} {r['state']} {r['replay_bytes'] or 0} B behind")
    probe.measure("standbys", len(found))
    return f"{len(found)} standby(s)" + (": " + ", ".join(parts) if parts else "")


def _inactive_ages(
    probe: Probe, cluster: Cluster, inactive: dict[str, bool]
) -> dict[str, float | None]:
    """Seconds each slot has been inactive, from the first check that saw it so."""
    path = os.path.join(probe.svc.settings.state_dir, "check-slots.json")
    now = time.time()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with Cookie(path) as seen:
            out: dict[str, float | None] = {}
            for slot, idle in inactive.items():
                key = f"{cluster.id}/{slot}"
                if not idle:
                    seen.pop(key, None)
                    out[slot] = 0.0
                    continue
                since = float(seen.setdefault(key, now))
                out[slot] = now - since
            for key in [k for k in seen if k.startswith(f"{cluster.id}/")]:
                if key.split("/", 1)[1] not in inactive:
                    del seen[key]
            seen.commit()
            return out
    except OSError:  # no state to keep here: the age is unknown
        return {slot: None if idle else 0.0 for slot, idle in inactive.items()}


@service(
    "replication-slots",
    "per slot: WAL retained, wal_status, safe_wal_size, how long inactive",
    MetricSpec("retained", "B", "1GB", "10GB", "bytes from restart_lsn to the current LSN"),
    MetricSpec("inactive", "s", "15m", None, "time since a check first saw it inactive"),
    MetricSpec(
        "remaining", "B", None, "64MB:", "safe_wal_size (when max_slot_wal_keep_size is set)"
    ),
    MetricSpec("slots", "", None, None, "replication slots"),
)
def check_slots(probe: Probe, cluster: Cluster) -> str:
    found = rows(probe, cluster, SLOTS)
    ages = _inactive_ages(probe, cluster, {r["name"]: not r["active"] for r in found})
    taken: set[str] = set()
    parts = []
    for r in found:
        lb = label(r["name"], taken)
        probe.measure("retained", r["retained"], f"{lb}_retained")
        probe.measure("inactive", ages[r["name"]], f"{lb}_inactive")
        if r["safe_wal_size"] is not None:
            probe.measure("remaining", r["safe_wal_size"], f"{lb}_remaining", min=None)
        status = r["wal_status"]
        if status == "lost":
            probe.problem(State.CRITICAL, f"slot {r['name']} lost WAL it needed")
        elif status == "unreserved":
            probe.problem(State.WARNING, f"slot {r['name']} is about to lose WAL (unreserved)")
        active = "active" if r["active"] else "inactive"
        parts.append(f"{r['name']} {active} {status or '-'} retains {r['retained'] or 0} B")
    probe.measure("slots", len(found))
    return f"{len(found)} slot(s)" + (": " + ", ".join(parts) if parts else "")
