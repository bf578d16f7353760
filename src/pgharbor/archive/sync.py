"""wal sync: the catch-up of missing copies. Every archived file of a cluster ends up on
every active placement: a copy a placement lacks (it was down, or added later) is read
from another placement, verified against its checksum, and stored like a push (atomic,
durable, sealed with the destination's key). A copy that is stored but that the catalog
does not record (its row was lost with a torn journal record, or could be written
nowhere) is read, verified and recorded. It also sweeps what writers killed mid-put left
behind under the cluster's WAL folder (see Storage.sweep)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgharbor import envelope
from pgharbor.access import keyring
from pgharbor.archive.context import HotSession
from pgharbor.archive.fetch import open_copy, read_archived
from pgharbor.archive.push import PushResult, store_bytes
from pgharbor.catalog import lite
from pgharbor.domain.wal import WalName, parse_name
from pgharbor.errors import PgharborError, UsageError
from pgharbor.model import Cluster, Placement
from pgharbor.settings import Settings
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import wal_key, wal_prefix


@dataclass
class SyncResult:
    cluster: str
    files: int = 0
    copied: dict[str, int] = field(default_factory=dict)  # target -> copies made
    failed: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    swept: int = 0  # leftovers of killed writers removed from the targets
    recorded: int = 0  # stored copies the catalog lacked, verified and recorded


def _names(settings: Settings, ctx: Cluster, p: Placement, result: SyncResult) -> set[str]:
    storage = open_storage(p.url, settings.target_options(p.target))
    result.swept += storage.sweep(wal_prefix(ctx.name))
    names = set()
    for obj in storage.list(wal_prefix(ctx.name)):
        name = obj.key.rsplit("/", 1)[1]
        try:
            parse_name(name)
        except UsageError:
            continue  # not a WAL file (nothing else lives there, but never copy junk)
        names.add(name)
    return names


def _unrecorded_rows(
    settings: Settings,
    session: HotSession,
    placements: tuple[Placement, ...],
    present: dict[str, set[str]],
    result: SyncResult,
) -> list[dict[str, object]]:
    """Rows for the copies that are stored but missing from the catalog, each verified."""
    from datetime import UTC, datetime

    ctx = session.ctx
    if session.conn is None:
        return []  # the catalog is away: nothing to compare with
    known = lite.recorded_copies(session.conn, session.kind, ctx.id)
    rows: list[dict[str, object]] = []
    for p in placements:
        missing = sorted(n for n in present[p.target] if (p.target_id, n) not in known)
        if not missing:
            continue
        storage = open_storage(p.url, settings.target_options(p.target))
        keys = keyring(settings, ctx.name, p.target)
        for name in missing:
            wal = parse_name(name)
            try:
                blob = storage.get(wal_key(ctx.name, wal))
                data = open_copy(ctx, wal, blob, keys)
            except PgharborError as exc:
                result.failed.append(f"{name} on {p.target}: not recorded: {exc.message}")
                continue
            rows.append(
                {
                    "cluster_id": ctx.id,
                    "target_id": p.target_id,
                    "name": name,
                    "timeline": wal.timeline,
                    "size": len(data),
                    "stored_size": len(blob),
                    "checksum": "sha256:" + envelope.sha256(data),
                    "archived_at": datetime.now(UTC).isoformat(),
                    "status": "ok",
                    "detail": "recorded by wal sync",
                }
            )
    result.recorded = len(rows)
    return rows


def copy_between(
    settings: Settings,
    session: HotSession,
    wal: WalName,
    sources: tuple[Placement, ...],
    lacking: tuple[Placement, ...],
) -> tuple[PushResult, list[dict[str, Any]], PgharborError | None]:
    """Read ``wal`` from the first good copy on ``sources`` and store it on ``lacking`` as
    a push stores it (claims checked, a corrupt copy replaced only on the catalog's word)."""
    ctx = session.ctx
    found = read_archived(settings, ctx.with_placements(sources), wal)
    if found is None:
        raise PgharborError(f"{wal.name}: no placement has a good copy")
    return store_bytes(settings, ctx, wal, found[0], lacking, session.recorded_checksums)


def sync(settings: Settings, cluster: str) -> SyncResult:
    session = HotSession(settings, cluster)
    ctx = session.ctx
    result = SyncResult(cluster)
    present: dict[str, set[str]] = {}
    for p in ctx.placements:
        try:
            present[p.target] = _names(settings, ctx, p, result)
        except PgharborError as exc:
            result.unreachable.append(f"{p.target}: {exc}")
    reachable = tuple(p for p in ctx.placements if p.target in present)
    everything = set().union(*present.values()) if present else set()
    result.files = len(everything)
    rows = []
    try:
        rows += _unrecorded_rows(settings, session, reachable, present, result)
        for name in sorted(everything, key=lambda n: (not n.endswith(".history"), n)):
            lacking = tuple(p for p in reachable if name not in present[p.target])
            if not lacking:
                continue
            wal = parse_name(name)
            sources = tuple(p for p in reachable if name in present[p.target])
            try:
                stored, new_rows, error = copy_between(settings, session, wal, sources, lacking)
            except PgharborError as exc:
                result.failed.append(exc.message)
                continue
            rows += new_rows
            for o in stored.outcomes:
                if o.ok:
                    result.copied[o.target] = result.copied.get(o.target, 0) + 1
                else:
                    result.failed.append(f"{name} -> {o.target}: {o.detail}")
            if error is not None and not stored.copies:
                result.failed.append(error.message)
            if len(rows) >= 200:
                session.record(rows)
                rows = []
        if rows:
            session.record(rows)
    finally:
        session.close()
    return result
