"""WAL verification and repair (the scheduler's job kind ``verify``, and ``pgharbor
verify``). One run for a cluster:

1. content: a slice of the archived files is read back from every placement and checked
   (``wal verify`` by name), and a slice of the usable backups (``backup verify``), so
   that everything is read within ``verify_content_period``; a WAL copy found missing or
   corrupt is marked so in the catalog, a backup that fails is reported;
2. gaps: from the catalog alone (domain.gaps), the expected set per timeline and what
   it lacks; placement lag is repaired by copying from a good placement (``wal verify
   --repair``'s machinery);
3. a gap past the grace is *lost* only once every placement confirmed it does not hold
   the segment (a stat where the placement's claim holds): the catalog may only lag
   behind (a journal not yet replayed). A segment found stored is recorded by
   ``wal sync`` and the catalog is read again; one that cannot be confirmed either way
   stays pending;
4. the gaps are recorded (catalog.gaps), and an ok backup whose own WAL has a lost
   segment is marked unusable (and ok again once that gap is resolved: the segments
   came back).
"""

from __future__ import annotations

import dataclasses
import getpass
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pgharbor.access import resolve
from pgharbor.archive import verify as wal_verify
from pgharbor.archive.fetch import read_archived
from pgharbor.archive.sync import sync as wal_sync
from pgharbor.backup.verify import verify_backup
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.gaps import UNUSABLE, GapRepo, GapRow, unacknowledged_gaps
from pgharbor.domain.gaps import (
    LOST,
    PENDING,
    GapScan,
    Run,
    Segment,
    expected_starts,
    next_slice,
    scan,
)
from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.wal import parse_name, segment_name
from pgharbor.errors import PgharborError, UsageError
from pgharbor.model import Cluster, Placement
from pgharbor.services.context import Services
from pgharbor.storage.claim import check_claim
from pgharbor.storage.layout import wal_key

__all__ = [
    "GapList",
    "VerificationResult",
    "ack_gap",
    "list_gaps",
    "unacknowledged_gaps",
    "verify",
    "verify_all",
]
KEPT = ("ok", UNUSABLE, "running")  # backups whose WAL the archive must hold


@dataclass
class VerificationResult:
    cluster: str
    expected: dict[int, list[str]] = field(default_factory=dict)  # timeline -> [first, last]
    gaps: list[GapRow] = field(default_factory=list)  # open after this run
    repaired: list[str] = field(default_factory=list)  # "NAME -> TARGET"
    not_repaired: list[str] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)  # backups marked unusable now
    usable_again: list[str] = field(default_factory=list)  # their lost WAL came back
    content_checked: int = 0  # files read back in this run's slice
    content_bad: list[str] = field(default_factory=list)  # "TARGET: NAME: problem"
    recorded: int = 0  # stored copies the catalog lacked, recorded by wal sync
    backups_checked: list[str] = field(default_factory=list)  # backup verify this run
    backups_bad: list[str] = field(default_factory=list)  # "ID on TARGET: status; ..."
    problems: list[str] = field(default_factory=list)  # WAL that could not be checked

    @property
    def lost(self) -> list[GapRow]:
        return [g for g in self.gaps if g.state == LOST]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.not_repaired or self.problems or self.backups_bad)


@dataclass
class GapList:
    cluster: str
    gaps: list[GapRow]

    @property
    def ok(self) -> bool:
        return not any(g.state == LOST and not g.acked for g in self.gaps)


def _active(svc: Services, name: str) -> Cluster:
    c = svc.catalog.cluster(name)
    return c.with_placements(tuple(p for p in svc.catalog.placements(name) if p.active))


# -- 1. content ------------------------------------------------------------------
def _content(svc: Services, cluster: Cluster, r: VerificationResult, at: datetime) -> None:
    repo = GapRepo(svc.catalog)
    wal_cursor, backup_cursor, last = repo.cursor(cluster.id)
    period = svc.settings.verify_content_period
    elapsed = (at - last).total_seconds() if last else None
    names = next_slice(
        sorted(f.name for f in svc.catalog.wal_files(cluster.name)), wal_cursor, elapsed, period
    )
    ids = [b.id for b in BackupRepo(svc.catalog).for_cluster(cluster.name, status="ok")]
    picked = next_slice(sorted(ids), backup_cursor, elapsed, period)
    if names:
        _content_wal(svc, cluster, r, names)
    for backup_id in picked:
        try:
            checked = verify_backup(svc.catalog, svc.settings, cluster.name, backup_id)
        except PgharborError as exc:  # one backup that cannot be checked stops no other
            r.backups_bad.append(f"{backup_id}: not verified: {exc.message}")
            continue
        r.backups_checked.append(backup_id)
        if not checked.ok:
            r.backups_bad += [
                f"{backup_id} on {p.target}: {p.status}" + "".join(f"; {x}" for x in p.problems)
                for p in checked.placements
                if p.status != "ok"
            ]
    repo.set_cursor(
        cluster.id,
        names[-1] if period > 0 and names else "",
        picked[-1] if period > 0 and picked else "",
        at,
    )


def _content_wal(svc: Services, cluster: Cluster, r: VerificationResult, names: list[str]) -> None:
    checked = wal_verify.verify(svc.settings, cluster.name, only=names)
    r.content_checked = len(names)
    r.problems += [f"unreachable: {u}" for u in checked.unreachable]
    ids = {p.target: p for p in cluster.placements}
    trusted = {t for t in ids if _claim_ok(svc, cluster, ids[t])}
    marks = []
    for b in checked.bad:
        r.content_bad.append(f"{b.target}: {b.name}: {b.problem}")
        if b.problem != "missing":
            marks.append((ids[b.target].target_id, b.name, "corrupt", b.problem))
        elif b.target in trusted:  # "not found" believed only where the claim holds
            marks.append((ids[b.target].target_id, b.name, "missing", "missing (verify)"))
    GapRepo(svc.catalog).mark_copies(cluster.id, marks)


def _claim_ok(svc: Services, cluster: Cluster, p: Placement) -> bool:
    try:
        (access,) = resolve(svc.settings, cluster.name, [p])
        if access.storage is None:
            return False
        check_claim(access.storage, cluster.name, cluster.system_identifier, p.target_id)
    except Exception:
        return False
    return True


# -- 2. gaps from the catalog ----------------------------------------------------
def _histories(
    svc: Services, cluster: Cluster, timelines: set[int], r: VerificationResult
) -> dict[int, TimelineHistory]:
    out = {}
    for tli in sorted(t for t in timelines if t > 1):
        wal = parse_name(f"{tli:08X}.history")
        try:
            found = read_archived(svc.settings, cluster, wal)
        except PgharborError as exc:
            r.problems.append(f"{wal.name}: {exc.message}")
            continue
        if found is None:
            r.problems.append(f"timeline {tli} has no history file ({wal.name}) in the archive")
            continue
        out[tli] = TimelineHistory.parse(tli, found[0].decode())
    return out


def _scan(svc: Services, cluster: Cluster, r: VerificationResult, at: datetime) -> GapScan:
    required = {p.target for p in cluster.placements}
    segments: dict[str, Segment] = {}
    for f in svc.catalog.wal_files(cluster.name):
        good = [c for c in f.copies if c.status == "ok" and c.target in required]
        segments[f.name] = Segment(
            frozenset(c.target for c in good), min((c.archived_at for c in good), default=None)
        )
    timelines = {parse_name(n).timeline for n in segments}
    backups = [
        (b.timeline or 1, b.start_lsn)
        for b in BackupRepo(svc.catalog).for_cluster(cluster.name)
        if b.status in KEPT and b.start_lsn
    ]
    starts = expected_starts(
        backups, _histories(svc, cluster, timelines, r), timelines, cluster.wal_segment_size
    )
    grace = timedelta(seconds=svc.settings.verify_grace)
    return scan(segments, starts, required, cluster.wal_segment_size, at, grace)


def _repair_lag(svc: Services, cluster: Cluster, found: GapScan, r: VerificationResult) -> None:
    if not found.lag:
        return
    bad = [wal_verify.BadCopy(t, lag.name, "missing") for lag in found.lag for t in lag.lacking]
    fixed = wal_verify.repair(svc.settings, wal_verify.VerifyResult(cluster.name, bad=bad))
    r.repaired += fixed.repaired
    r.not_repaired += fixed.failed


# -- 3. confirming a loss on the targets -----------------------------------------
def _stored_somewhere(
    svc: Services, cluster: Cluster, run: Run, corrupt: set[tuple[str, str]]
) -> bool | None:
    """True: some placement holds a segment of ``run`` (not known to be corrupt);
    False: every placement confirmed it holds none; None: not known."""
    size = cluster.wal_segment_size
    names = [segment_name(run.timeline, n, size) for n in range(run.first, run.last + 1)]
    for p in cluster.placements:
        (access,) = resolve(svc.settings, cluster.name, [p])
        if access.storage is None:
            return None
        try:
            for name in names:
                if (p.target, name) not in corrupt and access.storage.stat(
                    wal_key(cluster.name, parse_name(name))
                ):
                    return True
            check_claim(access.storage, cluster.name, cluster.system_identifier, p.target_id)
        except Exception:
            return None
    return False


def _confirm(svc: Services, cluster: Cluster, runs: list[Run]) -> tuple[list[Run], bool]:
    """The runs with each unconfirmed loss turned pending; and whether a copy the catalog
    lacks was found stored (then wal sync records it)."""
    corrupt = {
        (c.target, f.name)
        for f in svc.catalog.wal_files(cluster.name)
        for c in f.copies
        if c.status == "corrupt"
    }
    out, stored = [], False
    for run in runs:
        if run.state == LOST:
            there = _stored_somewhere(svc, cluster, run, corrupt)
            stored = stored or there is True
            if there is not False:
                run = dataclasses.replace(run, state=PENDING)
        out.append(run)
    return out, stored


# -- 4. unusable backups ---------------------------------------------------------
def _mark_unusable(svc: Services, cluster: Cluster, gaps: list[GapRow]) -> list[str]:
    size = cluster.wal_segment_size
    lost = [(g, *g.segnos(size)) for g in gaps if g.state == LOST]
    marked = []
    for b in BackupRepo(svc.catalog).for_cluster(cluster.name, status="ok"):
        if not (b.wal_start and b.wal_stop):
            continue
        lo, hi = parse_name(b.wal_start), parse_name(b.wal_stop)
        for g, first, last in lost:
            if g.timeline not in (lo.timeline, hi.timeline):
                continue
            start = lo.segno(size) if lo.timeline == g.timeline else 0
            stop = hi.segno(size) if hi.timeline == g.timeline else math.inf
            if first <= stop and start <= last:
                reason = f"lost WAL: gap {g.id} ({g.first_segment}..{g.last_segment})"
                if GapRepo(svc.catalog).mark_unusable(b.id, reason):
                    marked.append(b.id)
                break
    return marked


def verify(svc: Services, cluster_name: str) -> VerificationResult:
    """One verification run for one cluster (see the module)."""
    cluster = _active(svc, cluster_name)
    r = VerificationResult(cluster.name)
    if not cluster.placements:
        r.problems.append("no active placement")
        return r
    at = datetime.now(UTC)
    _content(svc, cluster, r, at)
    found = _scan(svc, cluster, r, at)
    _repair_lag(svc, cluster, found, r)
    runs, stored = _confirm(svc, cluster, found.runs)
    if stored:  # the catalog lags behind the targets: record what is there, look again
        synced = wal_sync(svc.settings, cluster.name)
        r.recorded = synced.recorded
        r.not_repaired += synced.failed
        runs, _ = _confirm(svc, cluster, _scan(svc, cluster, r, at).runs)
    size = cluster.wal_segment_size
    r.expected = {
        t: [segment_name(t, a, size), segment_name(t, b, size)]
        for t, (a, b) in found.expected.items()
    }
    # a run that could not check everything (a history unread, a placement away) never
    # resolves a gap, nor makes a backup usable again: it may only not have seen them
    whole = not r.problems
    r.gaps = GapRepo(svc.catalog).refresh(cluster.id, runs, size, at, resolve=whole)
    r.unusable = _mark_unusable(svc, cluster, r.gaps)
    if whole:
        lost_ids = [g.id for g in r.gaps if g.state == LOST]
        r.usable_again = GapRepo(svc.catalog).restore_usable(cluster.id, lost_ids)
    return r


def verify_all(svc: Services) -> list[VerificationResult]:
    """Every active cluster; one cluster's failure is its result's problem, not a stop."""
    out = []
    for c in svc.catalog.clusters():
        if not c.active:
            continue
        try:
            out.append(verify(svc, c.name))
        except PgharborError as exc:
            out.append(VerificationResult(c.name, problems=[exc.message]))
    return out


def list_gaps(svc: Services, cluster_name: str, *, everything: bool = False) -> GapList:
    """The open gaps of a cluster (with ``everything``, the resolved ones too)."""
    c = svc.catalog.cluster(cluster_name)
    states = ("pending", LOST, "resolved") if everything else ("pending", LOST)
    return GapList(c.name, GapRepo(svc.catalog).gaps(c.id, states=states))


def ack_gap(svc: Services, cluster_name: str, gap_id: int, reason: str) -> GapRow:
    """Acknowledge a gap: someone knows and accepts it (it stays recorded, and still
    shortens the window; retention's guard no longer refuses for it)."""
    if not reason.strip():
        raise UsageError("give a --reason for acknowledging a gap")
    c = svc.catalog.cluster(cluster_name)
    return GapRepo(svc.catalog).ack(c.id, gap_id, getpass.getuser(), reason.strip())
