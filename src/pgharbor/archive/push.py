"""wal push: one WAL file from pg_wal to the cluster's targets, in priority order.

Runs once per 16 MiB of WAL as PostgreSQL's archive_command: imports stay lean (no
ORM, no CLI framework), and a file every target already holds costs one header read
per target and no compression.
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import UTC, datetime  # sqlite3 and psycopg load it anyway

from pgharbor import envelope
from pgharbor.access import Access, resolve
from pgharbor.archive.context import HotSession
from pgharbor.archive.early import Early, MappedFile, map_open, push_threads, take
from pgharbor.domain.wal import WalKind, parse_name, validate_segment, validate_text_file
from pgharbor.errors import (
    ArchiveIncomplete,
    Conflict,
    EncryptionError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    PgharborError,
    UsageError,
)
from pgharbor.plain import Record
from pgharbor.storage.claim import check_claim
from pgharbor.storage.layout import quarantined_wal_key, wal_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pgharbor import crypto
    from pgharbor.archive.hotcli import LazySettings
    from pgharbor.domain.wal import WalName
    from pgharbor.model import Cluster, Placement
    from pgharbor.settings import Settings


class CopyOutcome(Record):
    __slots__ = ("target", "status", "stored_size", "detail")  # noqa: RUF023

    def __init__(
        self,
        target: str,
        status: str,  # "stored" | "present" | "failed" | "conflict"
        stored_size: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.target = target
        self.status = status
        self.stored_size = stored_size
        self.detail = detail

    @property
    def ok(self) -> bool:
        return self.status in ("stored", "present")


class PushResult(Record):
    __slots__ = (  # noqa: RUF023
        "cluster",
        "name",
        "size",
        "checksum",
        "required",
        "outcomes",
        "recorded_in",
    )

    def __init__(
        self,
        cluster: str,
        name: str,
        size: int,
        checksum: str,
        required: int,
        outcomes: list[CopyOutcome] | None = None,
        recorded_in: str = "",
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.size = size
        self.checksum = checksum
        self.required = required
        self.outcomes: list[CopyOutcome] = [] if outcomes is None else outcomes
        self.recorded_in = recorded_in

    @property
    def copies(self) -> int:
        return sum(o.ok for o in self.outcomes)


def read_wal_file(path: str) -> tuple[WalName, bytes | memoryview, MappedFile | None]:
    """The file's bytes: a read-only view of a mapping for a segment (and the mapping, to
    check and close: see MappedFile), the bytes of anything smaller (and None)."""
    wal = parse_name(os.path.basename(path))
    try:
        with open(path, "rb") as f:
            if wal.kind in (WalKind.SEGMENT, WalKind.PARTIAL):
                mapped = map_open(path, f)
                if mapped is not None:
                    return wal, mapped.view, mapped
            data = f.read()
    except FileNotFoundError:
        raise UsageError(f"WAL file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a WAL file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return wal, data, None


def validate(wal: WalName, data: bytes | memoryview, ctx: Cluster) -> None:
    if wal.kind in (WalKind.SEGMENT, WalKind.PARTIAL):
        validate_segment(wal, data, system_identifier=ctx.sysid, segment_size=ctx.wal_segment_size)
    else:
        validate_text_file(wal, bytes(data))


class _Sealer:
    """Compresses the file once and seals it once per key (targets may have their own).

    Compression starts on a thread at once, while the caller hashes the file (zstd and
    SHA-256 both release the GIL): a new segment costs max(hash, compress), not the sum.
    A file every target already holds wastes that CPU, never latency."""

    def __init__(
        self,
        data: bytes | memoryview,
        settings: Settings,
        threads: int = 0,
        source: MappedFile | None = None,
        early: Early | None = None,
    ) -> None:
        self.data, self.settings, self.threads, self.source = data, settings, threads, source
        self.meta: envelope.Meta | None = None
        self._payload: bytes | None = None
        self._error: BaseException | None = None
        self._blobs: dict[str | None, bytes] = {}
        self._lock = threading.Lock()
        self._early = early
        self._worker = threading.Thread(target=self._compress, daemon=True)
        self._worker.start()

    def sha256(self) -> str:
        """The file's SHA-256 (computed here, or by what the early start began)."""
        if self._early is not None:
            return self._early.sha256()
        return envelope.sha256(self.data)

    def _compress(self) -> None:
        try:
            if self._early is not None:  # the early start compressed it already, or will
                comp, level = self.settings.compression, self.settings.compression_level
                self._payload = self._early.payload(comp, level)
                if self._payload is not None:
                    return
            self._payload = envelope.compress(
                self.data,
                self.settings.compression,
                self.settings.compression_level,
                self.threads,
            )
        except BaseException as exc:  # re-raised in the thread that needs the payload
            self._error = exc

    def blob(self, keys: crypto.Keyring | None) -> bytes:
        kid = keys.current.id if keys is not None and keys.current is not None else None
        with self._lock:  # targets are written from several threads: compress once
            return self._blob(kid, keys)

    def _blob(self, kid: str | None, keys: crypto.Keyring | None) -> bytes:
        if kid not in self._blobs:
            self._worker.join()
            if self._error is not None:
                raise self._error
            assert self._payload is not None and self.meta is not None
            if self.source is not None and not self.source.unchanged():
                raise IntegrityError(
                    f"{self.source.path} changed while it was being archived; "
                    "PostgreSQL keeps it and retries"
                )
            self._blobs[kid] = envelope.seal(self.meta, self._payload, keys)
        return self._blobs[kid]


def _existing(storage: Any, key: str) -> envelope.Meta | None:
    try:
        head = storage.get_range(key, 0, envelope.HEAD_READ)
    except ObjectNotFound:
        return None
    if len(head) >= envelope.PREFIX and envelope.header_length(head) > len(head):
        head = storage.get_range(key, 0, envelope.header_length(head))
    return envelope.read_meta(head)


class _Copy:
    """Storing one copy on one placement. Idempotent: an identical stored copy, verified
    whole, is success without rewriting; a different one is a conflict, left untouched. A
    stored copy that is provably corrupt is replaced, but only when the catalog records
    exactly this content under the name (so two servers that diverged can never replace
    each other's WAL); it is kept under ``<cluster>/quarantine/`` first."""

    def __init__(
        self,
        placement: Placement,
        storage: Any,
        key: str,
        sealer: _Sealer,
        keys: crypto.Keyring | None,
        recorded: Any,
    ) -> None:
        self.placement, self.storage, self.key = placement, storage, key
        self.sealer, self.keys, self.recorded = sealer, keys, recorded
        assert sealer.meta is not None  # set by store_bytes before any target is written
        self.meta: envelope.Meta = sealer.meta

    def outcome(
        self, status: str, detail: str | None = None, size: int | None = None
    ) -> CopyOutcome:
        return CopyOutcome(self.placement.target, status, stored_size=size, detail=detail)

    def run(self) -> CopyOutcome:
        for _attempt in range(3):
            try:
                found = _existing(self.storage, self.key)
            except IntegrityError as exc:
                return self.heal(f"stored object unreadable: {exc}")
            if found is not None:
                return self.compare(found)
            blob = self.sealer.blob(self.keys)
            try:
                self.storage.put(self.key, blob, overwrite=False)
            except ObjectExists:
                continue  # a concurrent push won the race: compare with its copy
            return self.outcome("stored", size=len(blob))
        return self.outcome("failed", "object appeared and vanished")

    def compare(self, found: envelope.Meta) -> CopyOutcome:
        meta = self.meta
        if found.name != meta.name or found.system_identifier != meta.system_identifier:
            return self.outcome(
                "conflict",
                f"the stored object holds {found.name!r} of system {found.system_identifier}; "
                "left untouched",
            )
        try:
            same = envelope.same_contents(found, meta.sha256, self.keys)
        except EncryptionError as exc:
            return self.outcome("conflict", f"cannot compare: {exc.message}")
        if not same:
            theirs = (
                f"sha256 {found.sha256[:12]}…"
                if found.encryption is None
                else f"encrypted with key {found.key_id}"
            )
            return self.outcome(
                "conflict",
                f"already archived with different content ({theirs}, this file sha256 "
                f"{meta.sha256[:12]}…); the stored copy was left untouched",
            )
        # the header says "the same": a re-push must not count a copy it has not read
        try:
            blob = self.storage.get(self.key)
            envelope.unseal(blob, self.keys, max_size=meta.size, expect=self.sealer.data)
        except EncryptionError as exc:
            return self.outcome("conflict", f"cannot verify the stored copy: {exc.message}")
        except IntegrityError as exc:
            return self.heal(f"stored copy is corrupt: {exc}")
        return self.outcome("present")

    def heal(self, problem: str) -> CopyOutcome:
        checksums = self.recorded(self.meta.name) if self.recorded is not None else None
        if not checksums or checksums != {"sha256:" + self.meta.sha256}:
            return self.outcome(
                "failed",
                f"{problem}; left in place (the catalog does not confirm this content for "
                f"{self.meta.name}, so it is not replaced)",
            )
        blob = self.storage.get(self.key)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = quarantined_wal_key(self.meta.cluster, self.meta.name, stamp, os.getpid())
        self.storage.put(aside, blob)
        if self.storage.get(self.key) != blob:
            return self.outcome("failed", f"{problem}; it changed while being replaced")
        self.storage.delete(self.key)
        new = self.sealer.blob(self.keys)
        try:
            self.storage.put(self.key, new, overwrite=False)
        except ObjectExists:
            return self.outcome("failed", f"{problem}; replaced concurrently, try again")
        return self.outcome(
            "stored", f"replaced a corrupt copy ({problem}; kept as {aside})", size=len(new)
        )


def push_to(
    access: Access, key: str, sealer: _Sealer, ctx: Cluster, recorded: Any = None
) -> CopyOutcome:
    """Store one copy on a resolved placement, encrypted when a key is configured for the
    cluster or the target, on storage whose claim for the cluster was checked first. Never
    raises: every failure is a failed copy with a reason."""
    placement = access.placement
    try:
        if access.problem is not None or access.storage is None:
            raise access.problem or AssertionError("no storage")
        check_claim(access.storage, ctx.name, ctx.system_identifier, placement.target_id)
        return _Copy(placement, access.storage, key, sealer, access.keys, recorded).run()
    except PgharborError as exc:
        return CopyOutcome(placement.target, "failed", detail=exc.message)
    except Exception as exc:  # a bug or a library surprise: one copy fails, with a reason
        reason = " ".join(str(exc).split())[:300]
        return CopyOutcome(placement.target, "failed", detail=f"{type(exc).__name__}: {reason}")


def store_file(
    settings: Settings, ctx: Cluster, path: str, recorded: Any = None, threads: int = 0
) -> tuple[PushResult, list[dict[str, Any]], PgharborError | None]:
    """Validate one WAL file and store it on every active placement (concurrently; the
    outcomes are listed in priority order). Returns the result, the catalog rows to
    record and the error that makes the push fail (too few copies, a conflict), if any.
    No catalog I/O: the sync push and the resident pusher record rows their own way.
    ``threads``: zstd worker threads for this one file (the sync push uses the cores;
    the pusher, which stores several files at once, none)."""
    early = take(path)
    data: bytes | memoryview
    mapped: MappedFile | None
    if early is not None:
        wal, data, mapped = parse_name(os.path.basename(path)), early.data, early.mapped
    else:
        wal, data, mapped = read_wal_file(path)
    try:
        if not ctx.active:
            raise UsageError(f"cluster {ctx.name!r} is not active: refusing to archive {wal.name}")
        validate(wal, data, ctx)
        if not ctx.placements:
            raise ArchiveIncomplete(
                f"cluster {ctx.name!r} has no active placements: {wal.name} not archived",
                hint=f"pgharbor placement add {ctx.name} TARGET --priority 1",
            )
        return store_bytes(
            settings, ctx, wal, data, ctx.placements, recorded, threads, mapped, early
        )
    finally:
        if mapped is not None:
            mapped.close()


def store_bytes(
    settings: Settings,
    ctx: Cluster,
    wal: WalName,
    data: bytes | memoryview,
    placements: tuple[Placement, ...],
    recorded: Any = None,
    threads: int = 0,
    source: MappedFile | None = None,
    early: Early | None = None,
) -> tuple[PushResult, list[dict[str, Any]], PgharborError | None]:
    """Store validated bytes on ``placements`` (concurrently), as push and sync do.
    ``recorded(name)``: the checksums the catalog holds for a name, or None when it
    cannot say (only then may a corrupt stored copy be replaced; see _Copy)."""
    sealer = _Sealer(data, settings, threads, source, early)  # compressed while hashed
    meta = sealer.meta = envelope.Meta(
        kind="wal",
        name=wal.name,
        cluster=ctx.name,
        cluster_id=ctx.id,
        system_identifier=ctx.system_identifier,
        size=len(data),
        sha256=sealer.sha256(),
        compression=settings.compression,
    )
    # each placement resolved once; a key problem stops the push before anything is written
    accesses = resolve(settings, ctx.name, placements)
    result = PushResult(ctx.name, wal.name, len(data), meta.sha256, ctx.required_copies)
    key = wal_key(ctx.name, wal)
    outcomes: list[CopyOutcome | None] = [None] * len(placements)

    def one(i: int) -> None:
        try:
            outcomes[i] = push_to(accesses[i], key, sealer, ctx, recorded)
        except BaseException as exc:  # never a thread traceback in PostgreSQL's log
            outcomes[i] = CopyOutcome(placements[i].target, "failed", detail=repr(exc)[:300])

    others = [threading.Thread(target=one, args=(i,)) for i in range(1, len(placements))]
    for t in others:
        t.start()
    one(0)
    for t in others:
        t.join()
    when = datetime.now(UTC).isoformat()
    rows: list[dict[str, Any]] = []
    for placement, outcome in zip(placements, outcomes, strict=True):
        assert outcome is not None
        result.outcomes.append(outcome)
        if outcome.status == "conflict":
            continue  # the catalog keeps describing the copy that is stored
        rows.append(
            {
                "cluster_id": ctx.id,
                "target_id": placement.target_id,
                "name": wal.name,
                "timeline": wal.timeline,
                "size": len(data),
                "stored_size": outcome.stored_size,
                "checksum": "sha256:" + meta.sha256,
                "archived_at": when,
                "status": "ok" if outcome.ok else "failed",
                "detail": outcome.detail,
            }
        )
    return result, rows, outcome_error(result)


def outcome_error(result: PushResult) -> PgharborError | None:
    conflicts = [o for o in result.outcomes if o.status == "conflict"]
    if conflicts:
        return Conflict(f"{result.name}: on target {conflicts[0].target}: {conflicts[0].detail}")
    if result.copies < result.required:
        failed = "; ".join(f"{o.target}: {o.detail}" for o in result.outcomes if not o.ok)
        return ArchiveIncomplete(
            f"{result.name}: {result.copies} of {result.required} required copies stored "
            f"(PostgreSQL keeps the file and retries): {failed}"
        )
    return None


def push(settings: Settings, cluster: str, path: str) -> PushResult:
    parse_name(os.path.basename(path))
    session = HotSession(settings, cluster)
    try:
        result, rows, error = store_file(
            settings, session.ctx, path, session.recorded_checksums, push_threads()
        )
        result.recorded_in = session.record(rows)
    finally:
        session.close()
    if error is not None:
        raise error
    degraded = describe_degraded(result)
    if degraded:  # archived, but PostgreSQL's log is where operators look
        print(f"pgharbor: warning: {degraded}", file=sys.stderr)
    return result


def describe_degraded(result: PushResult) -> str | None:
    """One line when an archived file lacks a copy, or a copy had to be repaired."""
    notes = [
        f"{o.target}: {o.detail}"
        for o in result.outcomes
        if not o.ok or (o.status == "stored" and o.detail)
    ]
    if not notes:
        return None
    return (
        f"{result.name} archived with {result.copies} of {len(result.outcomes)} copies "
        f"({result.required} required): " + "; ".join(notes)
    )


def push_async(lazy: LazySettings, cluster: str, path: str) -> None:
    """archive_command in async mode: confirm what the resident pusher already archived,
    else start it if needed and wait (bounded) for it. Never stores anything itself."""
    import time

    from pgharbor.archive.spool import Spool, spawn_pusher

    name = parse_name(os.path.basename(path)).name
    folder = os.path.dirname(os.path.abspath(path))
    pgdata = os.path.dirname(folder) if os.path.basename(folder) == "pg_wal" else os.getcwd()
    spool = Spool(pgdata)
    if spool.take_done(name):
        return
    settings = lazy.get()  # not before: a file the pusher archived needs no settings
    started = time.time()
    deadline = time.monotonic() + settings.async_wait
    spawned = 0.0
    while True:
        if spool.take_done(name):
            return
        failure = spool.failure(name)
        if failure is not None and failure[0] >= started:
            raise ArchiveIncomplete(
                f"{failure[1].removeprefix('pgharbor: error: ')} (async pusher)"
            )
        now = time.monotonic()
        if now > deadline:
            raise ArchiveIncomplete(
                f"{name} not archived by the resident pusher within {settings.async_wait:.0f} s; "
                f"PostgreSQL keeps it and retries (see {spool.log_path})"
            )
        if now - spawned > 1.0 and not spool.pusher_running():
            spawn_pusher(settings, cluster, pgdata)
            spawned = now
        time.sleep(0.005)


def describe(result: PushResult) -> str:
    parts = ", ".join(f"{o.target}={o.status}" for o in result.outcomes)
    return f"{result.name}: {result.copies}/{result.required} copies ({parts})"
