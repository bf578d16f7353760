"""``archive``: is the primary's WAL getting archived? Idle-safe: the age that alerts is
that of the oldest WAL file *waiting* (its ``.ready`` file), so a quiet server with
nothing waiting is OK however old its last archived file is."""

from __future__ import annotations

from pgharbor.model import Cluster
from pgharbor.monitor.primary import rows
from pgharbor.monitor.registry import MetricSpec, Probe, service
from pgharbor.monitor.result import State, dur

QUERY = """
SELECT a.last_archived_wal, a.last_archived_time, a.failed_count, a.last_failed_wal,
       a.last_failed_time, now() AS now, current_setting('archive_mode') AS archive_mode,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS seg,
       r.n AS waiting, r.segments, r.oldest
FROM pg_stat_archiver a,
     LATERAL (SELECT count(*) AS n,
                     count(*) FILTER (WHERE name ~ '^[0-9A-F]{24}\\.ready$') AS segments,
                     min(modification) AS oldest
              FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') r
"""


@service(
    "archive",
    "age of the oldest WAL waiting to be archived, WAL waiting, failing archive_command",
    MetricSpec("waiting_age", "s", "15m", "1h", "age of the oldest WAL file waiting"),
    MetricSpec("waiting_bytes", "B", "64MB", "1GB", "WAL segments waiting x segment size"),
    MetricSpec("waiting", "", None, None, "files waiting (.ready)"),
    MetricSpec("failing", "", "0", None, "1 when the last attempt failed"),
    MetricSpec("last_wal_age", "s", None, None, "age of the last archived file"),
)
def check_archive(probe: Probe, cluster: Cluster) -> str:
    r = rows(probe, cluster, QUERY)[0]
    now = r["now"]
    if r["archive_mode"] == "off":
        probe.problem(State.CRITICAL, "archive_mode is off")
    last = r["last_archived_time"]
    failed_at = r["last_failed_time"]
    failing = failed_at is not None and (last is None or failed_at > last)
    waiting_age = (now - r["oldest"]).total_seconds() if r["oldest"] is not None else 0.0
    probe.measure("waiting_age", max(waiting_age, 0.0))
    probe.measure("waiting_bytes", int(r["segments"]) * int(r["seg"]))
    probe.measure("waiting", int(r["waiting"]))
    probe.measure("failing", int(failing), max=1)
    probe.measure("last_wal_age", (now - last).total_seconds() if last else None)
    probe.measure("archive_failures", int(r["failed_count"]), uom="c")
    parts = [f"{r['waiting']} WAL file(s) waiting"]
    if r["waiting"]:
        parts[0] += f", oldest for {dur(waiting_age)}"
    if last:
        parts.append(f"last archived {r['last_archived_wal']} {dur(now - last)} ago")
    else:
        parts.append("nothing archived yet")
    if failing:
        parts.append(f"archiving {r['last_failed_wal']} failed {dur(now - failed_at)} ago")
    return "; ".join(parts)
