"""monitor.metrics.families: Prometheus names and bounded labels from a snapshot (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.core import Metric

from pgharbor.catalog.stats import LastJob
from pgharbor.monitor.metrics import ClusterSnap, Snapshot, families
from pgharbor.services.health import TargetCheck
from pgharbor.services.status import BackupSummary, ClusterStatus, Window

T = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ALLOWED = {"cluster", "target", "timeline", "standby", "slot", "kind", "state", "result"}
ALLOWED |= {"wal_status", "service", "node"}


def _snap() -> Snapshot:
    st = ClusterStatus("c1", True, 1, ["t1", "t2"], files=7, last_archived_at=T)
    st.backups = BackupSummary(2, "b2", T, "b1", T, 100, 1, 0)
    st.windows = [Window(1, T, "0/2000028", "0/5000000", "000000010000000000000004", T)]
    c = ClusterSnap("c1", st, {"t1": 0, "t2": 3}, 0, up=True)
    c.archiver = {
        "oldest": None,
        "now": T,
        "last_failed_time": None,
        "last_archived_time": T,
        "waiting": 0,
        "segments": 0,
        "seg": 16777216,
        "failed_count": 4,
    }
    c.slots = [
        {
            "name": "s1",
            "active": False,
            "wal_status": "extended",
            "safe_wal_size": None,
            "retained": 99,
        }
    ]
    c.lag = [
        {"name": "walreceiver", "addr": None, "replay_bytes": 5, "flush_bytes": 1, "replay_s": None}
    ]
    tc = TargetCheck("t2", "file:///x")
    tc.problems.append("permission denied")
    job = LastJob("c1", "backup", "failed", T, T, None, 2)
    return Snapshot(
        T,
        [c],
        {"t2": tc},
        [("c1", "t1", "wal", 10)],
        [("c1", "backup", "failed", 2)],
        [job],
        [("c1", "backup", T)],
        [("n1", T)],
    )


def _samples(fams: list[Metric]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in fams}


def test_names_values_and_labels() -> None:
    fams = families(_snap())
    got = _samples(fams)
    for f in fams:
        assert f.name.startswith("pgharbor_")
        for s in f.samples:
            assert set(s.labels) <= ALLOWED, (f.name, s.labels)
            assert not any(v.startswith("0000000") for v in s.labels.values())
    assert got["pgharbor_wal_missing_copies"] == [
        ({"cluster": "c1", "target": "t1"}, 0),
        ({"cluster": "c1", "target": "t2"}, 3),
    ]
    assert got["pgharbor_archive_failures"] == [({"cluster": "c1"}, 4)]  # counter: _total
    assert got["pgharbor_backups_usable"] == [({"cluster": "c1"}, 2)]
    assert got["pgharbor_recoverable_window_start_timestamp_seconds"] == [
        ({"cluster": "c1", "timeline": "1"}, T.timestamp())
    ]
    status = {s["wal_status"]: v for s, v in got["pgharbor_slot_wal_status"]}
    assert status == {"reserved": 0, "extended": 1, "unreserved": 0, "lost": 0}
    assert got["pgharbor_replication_lag_bytes"] == [
        ({"cluster": "c1", "standby": "walreceiver"}, 5)
    ]
    assert got["pgharbor_target_up"] == [({"target": "t2"}, 0)]
    assert got["pgharbor_job_consecutive_failures"] == [({"cluster": "c1", "kind": "backup"}, 2)]
    assert got["pgharbor_wal_gap_segments"] == [
        ({"cluster": "c1", "state": s}, 0) for s in ("pending", "lost", "acknowledged")
    ]
