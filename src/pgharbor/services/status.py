"""status: one screen per cluster, from the catalog alone (no target is read).

The recoverable window of a timeline runs from the start of the oldest usable backup
that leads to it to the end of the last archived segment that follows without a gap.
A timeline without a backup of its own (one a promotion started) inherits the window of
the timeline it branched from when that window reaches its first segment. A lost WAL gap
(recorded by verify) ends a window even where the catalog still lists a copy; a usable
backup that starts after the gap opens the next window of its timeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pgharbor.catalog.backups import Backup, BackupRepo
from pgharbor.catalog.gaps import UNUSABLE, GapRepo, GapRow
from pgharbor.catalog.models import WalFile
from pgharbor.catalog.restore_points import RestorePointRepo
from pgharbor.domain.gaps import LOST
from pgharbor.domain.pitr import RestorePoint
from pgharbor.domain.wal import WalKind, format_lsn, parse_lsn, parse_name
from pgharbor.model import Cluster
from pgharbor.services.context import Services


@dataclass(frozen=True)
class Window:
    timeline: int
    start_time: datetime | None  # the oldest usable backup's start
    start_lsn: str | None
    end_lsn: str  # the end of the last segment archived without a gap
    end_segment: str
    end_archived_at: datetime | None


@dataclass(frozen=True)
class BackupSummary:
    usable: int
    newest: str | None
    newest_stop_time: datetime | None
    oldest: str | None
    oldest_start_time: datetime | None
    stored_bytes: int
    failed: int
    running: int
    unusable: int = 0  # marked unusable by verify: their own WAL has a lost segment


@dataclass
class ClusterStatus:
    cluster: str
    active: bool
    required_copies: int
    placements: list[str]
    files: int = 0
    last_archived: str | None = None
    last_archived_at: datetime | None = None
    last_archived_age_s: float | None = None
    missing_copies: int = 0  # archived files an active placement lacks
    backups: BackupSummary | None = None
    windows: list[Window] = field(default_factory=list)
    restore_points: int = 0
    latest_restore_point: RestorePoint | None = None
    gaps: list[GapRow] = field(default_factory=list)  # open WAL gaps (pending or lost)
    # the newest successful restore drill: "last proven recoverable", and its RTO
    proven_at: datetime | None = None
    proven_rto_s: float | None = None
    proven_backup: str | None = None


def _backup_summary(backups: list[Backup]) -> BackupSummary:
    usable = [b for b in backups if b.status == "ok"]
    newest = max(usable, key=lambda b: b.stop_time or b.start_time, default=None)
    oldest = min(usable, key=lambda b: b.start_time, default=None)
    return BackupSummary(
        usable=len(usable),
        newest=newest.id if newest else None,
        newest_stop_time=newest.stop_time if newest else None,
        oldest=oldest.id if oldest else None,
        oldest_start_time=oldest.start_time if oldest else None,
        stored_bytes=sum(b.stored_bytes for b in usable),
        failed=sum(b.status == "failed" for b in backups),
        running=sum(b.status == "running" for b in backups),
        unusable=sum(b.status == UNUSABLE for b in backups),
    )


def windows(
    cluster: Cluster,
    files: list[WalFile],
    backups: list[Backup],
    lost: Iterable[tuple[int, int, int]] = (),
) -> list[Window]:
    """The recoverable windows of each timeline (see the module). ``lost``: (timeline,
    first, last) segment numbers of lost gaps, never counted as archived; a usable
    backup that starts after a gap opens another window on its timeline."""
    size = cluster.wal_segment_size
    holes = {(t, n) for t, a, b in lost for n in range(a, b + 1)}
    segs: dict[int, dict[int, WalFile]] = {}
    for f in files:
        wal = parse_name(f.name)
        if wal.kind is not WalKind.SEGMENT or (wal.timeline, wal.segno(size)) in holes:
            continue
        if any(c.status == "ok" for c in f.copies):
            segs.setdefault(wal.timeline, {})[wal.segno(size)] = f
    out: list[Window] = []
    reach: dict[int, tuple[int, datetime | None, str | None]] = {}  # tli -> end segno, start
    for tli, have in sorted(segs.items()):
        usable = [b for b in backups if b.status == "ok" and (b.timeline or 1) == tli]
        starts: list[tuple[int, datetime | None, str | None]] = [
            (parse_lsn(b.start_lsn or "0/0") // size, b.start_time, b.start_lsn)
            for b in sorted(usable, key=lambda b: b.start_time)
        ]
        if not usable:  # a timeline a promotion started: inherits a parent's window reaching it
            branch = min(have)
            parents = [(p, r) for p, r in reach.items() if p < tli and r[0] >= branch - 1]
            if parents:
                _, (_, t, lsn) = max(parents)
                starts = [(branch, t, lsn)]
        end = -1
        for first, t, lsn in starts:
            if first <= end or first not in have:
                continue  # inside the window already found, or its WAL is not there
            end = first
            while end + 1 in have:
                end += 1
            reach[tli] = (end, t, lsn)  # the latest window (the furthest end)
            last = have[end]
            archived = min((c.archived_at for c in last.copies if c.status == "ok"), default=None)
            out.append(Window(tli, t, lsn, format_lsn((end + 1) * size), last.name, archived))
    return out


def cluster_status(svc: Services, name: str, files: list[WalFile] | None = None) -> ClusterStatus:
    """``files``: the cluster's WAL rows when the caller already read them (the
    dashboard's cluster page draws them too), else read here."""
    catalog = svc.catalog
    cluster = catalog.cluster(name)
    places = catalog.placements(name)
    st = ClusterStatus(
        cluster.name,
        cluster.active,
        cluster.required_copies,
        [p.target for p in places if p.active],
    )
    if files is None:
        files = catalog.wal_files(name)
    st.files = len(files)
    st.missing_copies = sum(bool(f.missing) for f in files)
    copies = [(c.archived_at, f.name) for f in files for c in f.copies if c.status == "ok"]
    if copies:
        st.last_archived_at, st.last_archived = max(copies)
        st.last_archived_age_s = (datetime.now(UTC) - st.last_archived_at).total_seconds()
    backups = BackupRepo(catalog).for_cluster(name)
    st.backups = _backup_summary(backups)
    st.gaps = GapRepo(catalog).gaps(cluster.id)
    size = cluster.wal_segment_size
    lost = [(g.timeline, *g.segnos(size)) for g in st.gaps if g.state == LOST]
    st.windows = windows(cluster, files, backups, lost)
    points = RestorePointRepo(catalog).for_cluster(cluster.id)
    st.restore_points = len(points)
    st.latest_restore_point = points[-1] if points else None
    from pgharbor.catalog.drills import DrillRepo

    drilled = [d for d in DrillRepo(catalog).for_cluster(cluster.id, name, 200) if d.ok]
    if drilled:
        st.proven_at, st.proven_rto_s = drilled[0].finished_at, drilled[0].total_s
        st.proven_backup = drilled[0].backup_id
    return st


def status(svc: Services, name: str | None = None) -> list[ClusterStatus]:
    """One cluster, or every cluster of the fleet."""
    names = [name] if name else [c.name for c in svc.catalog.clusters()]
    return [cluster_status(svc, n) for n in names]
