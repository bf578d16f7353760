"""expire: carry out a cluster's retention plan (domain.retention), resumably.

1. the plan is made from the catalog (backups, holds, policy, WAL copy rows) and the
   timeline histories in the archive; a refusal or a guard stops the run here;
2. the backups to delete are marked ``expiring`` in one transaction: no restore chooses
   them from then on;
3. they are deleted through backup.delete (the exclusive ``gc`` lease on all their
   targets, their objects, then one safe GC per target of the chunks only they used);
   a hold placed (or a drill started) meanwhile is re-checked first and puts its
   backup back; a running drill's backup is in use (catalog.drills), like a hold;
4. the WAL files the remaining backups do not need are computed again from what is left
   in the catalog and deleted on every target that has a copy, under that target's
   ``gc`` lease (checked before each delete), and then their rows.

A run killed anywhere is finished by the next: ``expiring`` (and ``deleting``) backups
are deleted whatever the policy says, and the WAL step only depends on what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from pgharbor import faultpoint
from pgharbor.backup.delete import delete_backups
from pgharbor.backup.gc import GcStats
from pgharbor.backup.lease import Lease, LeaseGroup
from pgharbor.catalog.backups import Backup, BackupRepo
from pgharbor.catalog.gaps import GapRepo
from pgharbor.catalog.repo import Catalog, now
from pgharbor.catalog.retention import DEFAULT, HoldRow, RetentionRepo
from pgharbor.domain.gaps import LOST
from pgharbor.domain.history import TimelineHistory
from pgharbor.domain.retention import (
    BackupState,
    Hold,
    Plan,
    Policy,
    TimelineWal,
    Verdict,
    expire_wal,
    plan,
)
from pgharbor.domain.wal import WalKind, parse_lsn, parse_name
from pgharbor.errors import PgharborError
from pgharbor.model import Cluster
from pgharbor.settings import Settings
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import wal_key

log = logging.getLogger(__name__)
CHECK_EVERY = 200  # WAL deletes between two lease checks


@dataclass
class ExpireRun:
    cluster: str
    dry_run: bool
    policy: Policy
    backups: list[Verdict]
    wal_delete: list[str]  # planned (a dry run) or deleted (a real run)
    timelines: list[TimelineWal]
    history_kept: list[int]
    refusals: list[str]
    guards: list[str]
    forced: bool = False
    deleted: list[str] = field(default_factory=list)  # backups deleted by this run
    skipped: list[str] = field(default_factory=list)  # held meanwhile: kept
    wal_objects_deleted: int = 0
    gc: dict[str, GcStats] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # --all: this cluster failed (the others went on)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.refusals and (self.forced or not self.guards)


def effective_policy(repo: RetentionRepo, cluster_id: str) -> Policy:
    """The cluster's settings over the fleet default (0 turns a rule off)."""
    mine, fleet = repo.policy(cluster_id), repo.policy(DEFAULT)
    keep = mine.keep_last if mine.keep_last is not None else fleet.keep_last
    window = mine.recovery_window if mine.recovery_window is not None else fleet.recovery_window
    floor = mine.min_backups if mine.min_backups is not None else fleet.min_backups
    return Policy(keep or None, window or None, max(floor or 1, 1))


def _state(b: Backup, holds: dict[str, HoldRow]) -> BackupState:
    h = holds.get(b.id)
    return BackupState(
        b.id,
        b.status,
        b.timeline or 1,
        parse_lsn(b.start_lsn) if b.start_lsn else None,
        b.stop_time,
        b.start_time,
        Hold(h.until, h.reason) if h else None,
    )


def _names(catalog: Catalog, cluster: Cluster) -> list[str]:
    return [
        f.name for f in catalog.wal_files(cluster.name) if any(c.status == "ok" for c in f.copies)
    ]


def _histories(
    settings: Settings, catalog: Catalog, cluster: Cluster, names: list[str], notes: list[str]
) -> dict[int, TimelineHistory]:
    """The history of every timeline with a .history file; one that cannot be read is
    left out (its timeline then keeps every file, see domain.retention)."""
    from pgharbor.archive.fetch import read_archived

    ctx = cluster.with_placements(tuple(catalog.placements(cluster.name)))
    found: dict[int, TimelineHistory] = {}
    for name in names:
        wal = parse_name(name)
        if wal.kind is not WalKind.HISTORY:
            continue
        try:
            got = read_archived(settings, ctx, wal)
            if got is None:
                raise PgharborError("no target has it")
            found[wal.timeline] = TimelineHistory.parse(wal.timeline, got[0].decode())
        except (PgharborError, UnicodeDecodeError) as exc:
            notes.append(
                f"{name} cannot be read ({exc}): timeline {wal.timeline} keeps all its WAL"
            )
    return found


@dataclass
class _Inputs:
    cluster: Cluster
    states: list[BackupState]
    names: list[str]
    histories: dict[int, TimelineHistory]
    at: datetime


def _load(catalog: Catalog, settings: Settings, name: str, notes: list[str]) -> _Inputs:
    cluster = catalog.cluster(name)
    holds = RetentionRepo(catalog).holds(cluster.id)
    states = [_state(b, holds) for b in BackupRepo(catalog).for_cluster(name)]
    names = _names(catalog, cluster)
    return _Inputs(
        cluster, states, names, _histories(settings, catalog, cluster, names, notes), now()
    )


def make_plan(
    catalog: Catalog, settings: Settings, name: str, in_use: frozenset[str] = frozenset()
) -> tuple[_Inputs, Plan, Policy, list[str]]:
    from pgharbor.catalog.drills import DrillRepo

    notes: list[str] = []
    inputs = _load(catalog, settings, name, notes)
    drilled = DrillRepo(catalog).in_use(inputs.cluster.id)  # running drills hold these
    in_use = in_use | drilled
    policy = effective_policy(RetentionRepo(catalog), inputs.cluster.id)
    size = inputs.cluster.wal_segment_size
    acked = [
        (g.timeline, *g.segnos(size))
        for g in GapRepo(catalog).gaps(inputs.cluster.id, states=(LOST,))
        if g.acked
    ]
    p = plan(
        inputs.states,
        policy,
        inputs.at,
        inputs.names,
        inputs.histories,
        size,
        in_use,
        acked,
    )
    return inputs, p, policy, notes


def expire_cluster(
    catalog: Catalog,
    settings: Settings,
    name: str,
    *,
    dry_run: bool,
    force: bool,
    in_use: frozenset[str] = frozenset(),
) -> ExpireRun:
    """Plan (and unless ``dry_run`` carry out) one cluster's expiry; a refusal or an
    unforced guard is reported in the result with nothing changed. ``in_use``: ids of
    backups a running job uses (the scheduler's), kept."""
    inputs, p, policy, notes = make_plan(catalog, settings, name, in_use)
    run = ExpireRun(
        inputs.cluster.name,
        dry_run,
        policy,
        p.backups,
        p.wal_delete,
        p.timelines,
        p.history_kept,
        p.refusals,
        p.guards,
        forced=force,
        notes=notes,
    )
    if dry_run or not run.ok:
        return run
    _delete_backups(catalog, settings, run, [v.id for v in p.delete])
    run.wal_delete = _delete_wal(catalog, settings, run)
    return run


def _delete_backups(catalog: Catalog, settings: Settings, run: ExpireRun, ids: list[str]) -> None:
    repo = RetentionRepo(catalog)
    marked = repo.mark_expiring(ids)
    faultpoint.point("expire.after_mark")
    from pgharbor.catalog.drills import DrillRepo

    # a drill that started since the plan holds its backup: re-read after the mark (a
    # drill records itself, then checks its backup is still ok: one of the two sees
    # the other)
    drilled = DrillRepo(catalog).in_use(catalog.cluster(run.cluster).id) if marked else set()
    doomed = []
    for backup_id in marked:
        if repo.held(backup_id, now()) is not None or backup_id in drilled:  # kept
            repo.unmark(backup_id)
            run.skipped.append(backup_id)
        else:
            doomed.append(backup_id)
    if doomed:  # one set of gc leases, one collection per target
        run.gc = delete_backups(catalog, settings, run.cluster, doomed)
        run.deleted.extend(doomed)


def _delete_wal(catalog: Catalog, settings: Settings, run: ExpireRun) -> list[str]:
    """Delete what the backups left in the catalog do not need (computed again: only
    what is there counts), target by target under each one's gc lease."""
    inputs = _load(catalog, settings, run.cluster, run.notes)
    left = [s for s in inputs.states if s.status in ("ok", "running")]
    if not any(s.status == "ok" for s in left):
        run.notes.append("no usable backup is left: no WAL was expired")
        return []
    names, _, _ = expire_wal(left, inputs.names, inputs.histories, inputs.cluster.wal_segment_size)
    if not names:
        return []
    wanted = set(names)
    targets = {t.id: t for t in catalog.targets()}
    holders: dict[str, list[str]] = {}
    for f in catalog.wal_files(run.cluster):
        if f.name in wanted:
            for c in f.copies:
                holders.setdefault(c.target, []).append(f.name)
    by_name = {t.name: t for t in targets.values()}
    stores = [
        (by_name[t], open_storage(by_name[t].url, settings.target_options(t)))
        for t in sorted(holders)
        if t in by_name
    ]
    owner = f"expire {run.cluster}"
    leases = [Lease(s, "gc", owner) for _, s in stores]
    with LeaseGroup(leases):
        for (target, storage), lease in zip(stores, leases, strict=True):
            files = holders[target.name]
            for i, name in enumerate(files):
                if i % CHECK_EVERY == 0:
                    lease.check()
                storage.delete(wal_key(run.cluster, parse_name(name)))
                run.wal_objects_deleted += 1
            faultpoint.point("expire.after_wal_objects")
            RetentionRepo(catalog).forget_wal(inputs.cluster.id, target.id, files)
            log.info("target %s: %d WAL files of %s expired", target.name, len(files), run.cluster)
    return sorted(wanted)
