"""wal verify: is every archived file really there, whole, on every placement?

Every file the catalog records or any placement holds is read back from each active
placement and checked as a restore would check it (envelope checksum or authentication,
the name, the system identifier, a segment's page header). A flipped byte, a truncated or
missing copy, an unreadable target are all found before a recovery needs the file; and
per timeline, segments that no placement holds a good copy of are reported as gaps.
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pgharbor.access import keyring
from pgharbor.archive.context import HotSession
from pgharbor.archive.fetch import open_copy
from pgharbor.catalog import lite
from pgharbor.domain.wal import WalKind, WalName, parse_name, segment_name
from pgharbor.errors import ObjectNotFound, PgharborError, UsageError
from pgharbor.model import Cluster, Placement
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import wal_key, wal_prefix


@dataclass(frozen=True)
class BadCopy:
    target: str
    name: str
    problem: str  # "missing", or why the copy cannot be used


@dataclass(frozen=True)
class Gap:
    timeline: int
    first: str
    last: str
    segments: int


@dataclass
class VerifyResult:
    cluster: str
    files: int = 0
    placements: list[str] = field(default_factory=list)
    verified: dict[str, int] = field(default_factory=dict)  # target -> good copies read
    bad: list[BadCopy] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.bad or self.gaps or self.unreachable)


def _listed(storage: Storage, cluster: str) -> set[str]:
    names = set()
    for obj in storage.list(wal_prefix(cluster)):
        name = obj.key.rsplit("/", 1)[1]
        try:
            parse_name(name)
        except UsageError:
            continue
        names.add(name)
    return names


def _check(
    settings: Settings, ctx: Cluster, p: Placement, storage: Storage, wal: WalName
) -> str | None:
    """None when the copy is good, else what is wrong with it."""
    try:
        keys = keyring(settings, ctx.name, p.target)
        open_copy(ctx, wal, storage.get(wal_key(ctx.name, wal)), keys)
    except ObjectNotFound:
        return "missing"
    except PgharborError as exc:
        return exc.message
    except Exception as exc:  # a malformed object must not stop the verification
        return f"{type(exc).__name__}: {exc}"
    return None


def gaps(names: set[str], segment_size: int) -> list[Gap]:
    """Per timeline, the runs of segments missing between the first and the last one."""
    by_tli: dict[int, set[int]] = {}
    for name in names:
        wal = parse_name(name)
        if wal.kind is WalKind.SEGMENT:
            by_tli.setdefault(wal.timeline, set()).add(wal.segno(segment_size))
    found: list[Gap] = []
    for tli, segnos in sorted(by_tli.items()):
        run: list[int] = []
        for n in range(min(segnos), max(segnos) + 1):
            if n not in segnos:
                run.append(n)
                continue
            if run:
                found.append(_gap(tli, run, segment_size))
                run = []
    return found


def _gap(tli: int, run: list[int], segment_size: int) -> Gap:
    first, last = (segment_name(tli, n, segment_size) for n in (run[0], run[-1]))
    return Gap(tli, first, last, len(run))


def verify(
    settings: Settings, cluster: str, workers: int = 4, only: Collection[str] | None = None
) -> VerifyResult:
    """Every file (or only the names of ``only``: a slice, read by name without listing
    the targets, and no gaps computed) read back from every active placement."""
    if only is not None:
        return _verify_names(settings, cluster, sorted(only), workers)
    session = HotSession(settings, cluster)
    ctx = session.ctx
    try:
        recorded = (
            {n for _, n in lite.recorded_copies(session.conn, session.kind, ctx.id)}
            if session.conn
            else set()
        )
    finally:
        session.close()
    result = VerifyResult(cluster, placements=[p.target for p in ctx.placements])
    stores: list[tuple[Placement, Storage, set[str]]] = []
    for p in ctx.placements:
        try:
            storage = open_storage(p.url, settings.target_options(p.target))
            stores.append((p, storage, _listed(storage, ctx.name)))
        except PgharborError as exc:
            result.unreachable.append(f"{p.target}: {exc.message}")
    everything = set(recorded).union(*(listed for _, _, listed in stores))
    result.files = len(everything)
    good: set[str] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        for p, storage, listed in stores:
            names = sorted(everything)
            checks = pool.map(
                lambda n, p=p, storage=storage, listed=listed: (
                    n,
                    "missing"
                    if n not in listed
                    else _check(settings, ctx, p, storage, parse_name(n)),
                ),
                names,
            )
            for name, problem in checks:
                if problem is None:
                    good.add(name)
                    result.verified[p.target] = result.verified.get(p.target, 0) + 1
                else:
                    result.bad.append(BadCopy(p.target, name, problem))
    result.gaps = gaps(good | (everything if result.unreachable else set()), ctx.wal_segment_size)
    return result


def _verify_names(settings: Settings, cluster: str, names: list[str], workers: int) -> VerifyResult:
    session = HotSession(settings, cluster)
    ctx = session.ctx
    session.close()
    result = VerifyResult(cluster, files=len(names), placements=[p.target for p in ctx.placements])
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        for p in ctx.placements:
            try:
                storage = open_storage(p.url, settings.target_options(p.target))
            except PgharborError as exc:
                result.unreachable.append(f"{p.target}: {exc.message}")
                continue
            checks = pool.map(
                lambda n, p=p, storage=storage: (
                    n,
                    _check(settings, ctx, p, storage, parse_name(n)),
                ),
                names,
            )
            for name, problem in checks:
                if problem is None:
                    result.verified[p.target] = result.verified.get(p.target, 0) + 1
                else:
                    result.bad.append(BadCopy(p.target, name, problem))
    return result


@dataclass
class RepairResult:
    repaired: list[str] = field(default_factory=list)  # "NAME -> TARGET"
    failed: list[str] = field(default_factory=list)


def repair(settings: Settings, result: VerifyResult) -> RepairResult:
    """Copy each bad copy of ``result`` from a placement whose copy verified, as a push
    would store it (a corrupt one is replaced only when the catalog confirms the content,
    and kept in quarantine first)."""
    from pgharbor.archive.sync import copy_between

    out = RepairResult()
    session = HotSession(settings, result.cluster)
    ctx = session.ctx
    bad_on: dict[str, set[str]] = {}
    for b in result.bad:
        bad_on.setdefault(b.name, set()).add(b.target)
    rows = []
    try:
        for name, targets in sorted(bad_on.items()):
            sources = tuple(p for p in ctx.placements if p.target not in targets)
            lacking = tuple(p for p in ctx.placements if p.target in targets)
            try:
                stored, new_rows, _ = copy_between(
                    settings, session, parse_name(name), sources, lacking
                )
            except PgharborError as exc:
                out.failed.append(exc.message)
                continue
            rows += new_rows
            for o in stored.outcomes:
                (out.repaired if o.ok else out.failed).append(
                    f"{name} -> {o.target}" + ("" if o.ok else f": {o.detail}")
                )
        session.record(rows)
    finally:
        session.close()
    return out
