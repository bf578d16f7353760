"""wal push: one WAL file from pg_wal to the cluster's targets, in priority order.

Runs once per 16 MiB of WAL as PostgreSQL's archive_command: imports stay lean (no
ORM, no CLI framework), and a file every target already holds costs one header read
per target and no compression.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime  # sqlite3 and psycopg load it anyway

from pgharbor import envelope
from pgharbor.archive.context import HotSession
from pgharbor.domain.wal import WalKind, parse_name, validate_segment, validate_text_file
from pgharbor.errors import (
    ArchiveIncomplete,
    Conflict,
    EncryptionError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    PgharborError,
    StorageError,
    UsageError,
)
from pgharbor.plain import Record
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import wal_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pgharbor import crypto
    from pgharbor.archive.context import ClusterContext, Placement
    from pgharbor.domain.wal import WalName
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


def read_wal_file(path: str) -> tuple[WalName, bytes]:
    wal = parse_name(os.path.basename(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UsageError(f"WAL file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a WAL file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return wal, data


def validate(wal: WalName, data: bytes, ctx: ClusterContext) -> None:
    if wal.kind in (WalKind.SEGMENT, WalKind.PARTIAL):
        validate_segment(
            wal, data, system_identifier=ctx.system_identifier, segment_size=ctx.wal_segment_size
        )
    else:
        validate_text_file(wal, data)


class _Sealer:
    """Compresses the file once and seals it once per key (targets may have their own).

    Compression starts on a thread at once, while the caller hashes the file (zstd and
    SHA-256 both release the GIL): a new segment costs max(hash, compress), not the sum.
    A file every target already holds wastes that CPU, never latency."""

    def __init__(self, data: bytes, settings: Settings) -> None:
        self.data, self.settings = data, settings
        self.meta: envelope.Meta | None = None
        self._payload: bytes | None = None
        self._error: BaseException | None = None
        self._blobs: dict[str | None, bytes] = {}
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._compress, daemon=True)
        self._worker.start()

    def _compress(self) -> None:
        try:
            self._payload = envelope.compress(
                self.data, self.settings.compression, self.settings.compression_level
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


def push_to(placement: Placement, key: str, sealer: _Sealer, settings: Settings) -> CopyOutcome:
    """Store one copy, encrypted when a key is configured for the cluster or the target.
    Idempotent: an identical stored copy is success without rewriting; a different one is
    a conflict and is left untouched."""
    meta = sealer.meta
    assert meta is not None  # set by store_bytes before any target is written
    keys = envelope.keyring_for(settings, meta.cluster, placement.target)
    try:
        storage = open_storage(placement.url, settings.target_options(placement.target))
        for _attempt in range(2):
            try:
                found = _existing(storage, key)
            except IntegrityError as exc:
                return CopyOutcome(
                    placement.target, "conflict", detail=f"stored object unreadable: {exc}"
                )
            if found is not None:
                try:
                    same = envelope.same_contents(found, meta.sha256, keys)
                except EncryptionError as exc:
                    reason = exc.message
                    return CopyOutcome(
                        placement.target, "conflict", detail=f"cannot compare: {reason}"
                    )
                if same:
                    return CopyOutcome(placement.target, "present")
                theirs = (
                    f"sha256 {found.sha256[:12]}…"
                    if found.encryption is None
                    else f"encrypted with key {found.key_id}"
                )
                return CopyOutcome(
                    placement.target,
                    "conflict",
                    detail=f"already archived with different content ({theirs}, "
                    f"this file sha256 {meta.sha256[:12]}…); the stored copy was left untouched",
                )
            blob = sealer.blob(keys)
            try:
                storage.put(key, blob, overwrite=False)
            except ObjectExists:
                continue  # a concurrent push won the race: compare with its copy
            return CopyOutcome(placement.target, "stored", stored_size=len(blob))
        return CopyOutcome(placement.target, "failed", detail="object appeared and vanished")
    except StorageError as exc:
        return CopyOutcome(placement.target, "failed", detail=str(exc))


def store_file(
    settings: Settings, ctx: ClusterContext, path: str
) -> tuple[PushResult, list[dict[str, Any]], PgharborError | None]:
    """Validate one WAL file and store it on every active placement (concurrently; the
    outcomes are listed in priority order). Returns the result, the catalog rows to
    record and the error that makes the push fail (too few copies, a conflict), if any.
    No catalog I/O: the sync push and the resident pusher record rows their own way."""
    wal, data = read_wal_file(path)
    if not ctx.active:
        raise UsageError(f"cluster {ctx.name!r} is not active: refusing to archive {wal.name}")
    validate(wal, data, ctx)
    if not ctx.placements:
        raise ArchiveIncomplete(
            f"cluster {ctx.name!r} has no active placements: {wal.name} not archived",
            hint=f"pgharbor placement add {ctx.name} TARGET --priority 1",
        )
    return store_bytes(settings, ctx, wal, data, ctx.placements)


def store_bytes(
    settings: Settings,
    ctx: ClusterContext,
    wal: WalName,
    data: bytes,
    placements: tuple[Placement, ...],
) -> tuple[PushResult, list[dict[str, Any]], PgharborError | None]:
    """Store validated bytes on ``placements`` (concurrently), as push and sync do."""
    sealer = _Sealer(data, settings)  # compression runs while the file is hashed
    meta = sealer.meta = envelope.Meta(
        kind="wal",
        name=wal.name,
        cluster=ctx.name,
        cluster_id=ctx.id,
        system_identifier=str(ctx.system_identifier),
        size=len(data),
        sha256=envelope.sha256(data),
        compression=settings.compression,
    )
    for p in placements:  # a key problem stops the push before anything is written
        envelope.keyring_for(settings, ctx.name, p.target)
    result = PushResult(ctx.name, wal.name, len(data), meta.sha256, ctx.required_copies)
    key = wal_key(ctx.name, wal)
    outcomes: list[CopyOutcome | None] = [None] * len(placements)

    def one(i: int) -> None:
        outcomes[i] = push_to(placements[i], key, sealer, settings)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, len(placements))]
    for t in threads:
        t.start()
    one(0)
    for t in threads:
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
        result, rows, error = store_file(settings, session.ctx, path)
        result.recorded_in = session.record(rows)
    finally:
        session.close()
    if error is not None:
        raise error
    return result


def push_async(settings: Settings, cluster: str, path: str) -> None:
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
