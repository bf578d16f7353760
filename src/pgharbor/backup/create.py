"""backup create: stream a base backup from the cluster into each target's chunk store.

Nothing is written locally: the server's tar stream is cut into fixed-size chunks at
file offsets (PostgreSQL changes pages in place, so unchanged pages keep their chunks),
hashed and compressed on worker threads with a bounded window (memory does not grow
with the database), and only chunks a target lacks are stored. The manifest is written
last, after every file was checked against PostgreSQL's backup_manifest and all WAL the
backup needs is archived: until then nothing a restore could pick exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import tarfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from pgharbor.backup.chunkmap import ChunkMapWriter, Identity, delete_backup_objects
from pgharbor.backup.chunks import ChunkCodec, ChunkStore, ref_key
from pgharbor.backup.manifest import (
    BackupManifest,
    FileEntry,
    TablespaceEntry,
    check_against_pg_manifest,
    manifest_key,
)
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.wal import lsn_segno, parse_lsn, segment_name
from pgharbor.errors import PgharborError, PostgresError, UsageError
from pgharbor.settings import Settings
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import wal_key

log = logging.getLogger(__name__)
CHUNK_SIZE = 64 * 1024


@dataclass
class TargetStore:
    id: str
    name: str
    store: ChunkStore


@dataclass
class BackupResult:
    id: str
    cluster: str
    logical_bytes: int
    stored_bytes: int
    files: int
    seconds: float
    start_lsn: str
    stop_lsn: str
    targets: list[str]


Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class _Streamer:
    """Cuts tar members into chunks, encodes them on worker threads, stores them in order."""

    def __init__(
        self, stores: list[TargetStore], codec: ChunkCodec, workers: int, ids: ChunkMapWriter
    ) -> None:
        self.stores, self.codec, self.ids = stores, codec, ids
        self.queued = 0  # chunk ids handed to the window so far: the next one's position
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chunk")
        self.window: deque[Future[tuple[bytes, int, bytes | None]]] = deque()
        self.limit = workers * 4
        self.logical = 0

    def _prepare(self, block: bytes) -> tuple[bytes, int, bytes | None]:
        cid = self.codec.chunk_id(block)
        needed = any(not t.store.has(cid) for t in self.stores)
        return cid, len(block), self.codec.encode(block) if needed else None

    def _settle(self) -> None:
        cid, size, blob = self.window.popleft().result()
        for t in self.stores:
            if not t.store.has(cid):
                # stores only gain chunks: one missing now was missing when it was hashed
                assert blob is not None
                t.store.add(cid, size, blob)
        self.ids.append(cid)

    def archive(
        self, stream: IO[bytes], progress: Progress, done: list[int], total: int
    ) -> list[FileEntry]:
        entries: list[FileEntry] = []
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in tf:
                entry = FileEntry(
                    path=member.name.rstrip("/"),
                    type="f",
                    mode=member.mode,
                    mtime=int(member.mtime),
                )
                if member.isdir():
                    entry.type = "d"
                elif member.issym():
                    entry.type, entry.link = "l", member.linkname
                elif member.isfile():
                    entry.size, entry.first_chunk = member.size, self.queued
                    src = tf.extractfile(member)
                    assert src is not None
                    digest = hashlib.sha256()
                    while block := src.read(CHUNK_SIZE):
                        digest.update(block)
                        self.window.append(self.pool.submit(self._prepare, block))
                        self.queued += 1
                        while len(self.window) > self.limit:
                            self._settle()
                        done[0] += len(block)
                        progress(done[0], total)
                    entry.sha256 = digest.hexdigest()
                    self.logical += entry.size
                else:
                    continue  # tar from BASE_BACKUP has no other member types
                entries.append(entry)
        while self.window:
            self._settle()
        return entries

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _new_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def wait_for_wal(
    settings: Settings,
    cluster: str,
    placements: list[tuple[str, str]],
    names: list[str],
    required: int,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    """Wait until every WAL file in ``names`` is on at least ``required`` placements."""
    from pgharbor.domain.wal import parse_name

    storages = [open_storage(url, settings.target_options(name)) for name, url in placements]
    deadline = time.monotonic() + timeout
    pending = list(names)
    said = False
    while pending:
        name = pending[0]
        key = wal_key(cluster, parse_name(name))
        have = 0
        for s in storages:
            try:
                have += s.exists(key)
            except PgharborError:
                continue
        if have >= required:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise PgharborError(
                f"WAL {name} needed by the backup was not archived within {timeout:.0f} s "
                f"({have} of {required} copies)",
                hint="check archive_command and pg_stat_archiver on the cluster",
            )
        if not said:
            say(f"waiting for WAL {names[0]}..{names[-1]} to be archived")
            said = True
        time.sleep(0.5)


def create_backup(
    catalog: Catalog,
    settings: Settings,
    cluster_name: str,
    *,
    target: str | None = None,
    wal_timeout: float = 300,
    workers: int | None = None,
    progress: Progress = lambda d, t: None,
    say: Callable[[str], None] = lambda s: None,
) -> BackupResult:
    cluster = catalog.cluster(cluster_name)
    places = [p for p in catalog.placements(cluster_name) if p.active]
    if target is not None:
        places = [p for p in places if p.target == target]
        if not places:
            raise UsageError(
                f"cluster {cluster_name!r} has no active placement on target {target!r}"
            )
    if not places:
        raise UsageError(f"cluster {cluster_name!r} has no active placements to back up to")
    codec = ChunkCodec.for_cluster(settings, cluster.name, [p.target for p in places])
    stores = [
        TargetStore(
            p.target_id,
            p.target,
            ChunkStore(open_storage(p.url, settings.target_options(p.target)), codec),
        )
        for p in places
    ]
    repo = BackupRepo(catalog)
    backup_id = _new_id()
    label = f"pgharbor {backup_id}"
    repo.begin(
        backup_id, cluster.id, label, [t.id for t in stores], socket.gethostname(), os.getpid()
    )
    t0 = time.monotonic()
    streamer: _Streamer | None = None
    try:
        for t in stores:
            t.store.storage.put(ref_key(cluster.name, backup_id, running=True), backup_id.encode())
            t.store.load()
        from pgharbor.pg import identity
        from pgharbor.pg.basebackup import BaseBackupStream

        with identity.connect(cluster.dsn) as conn:
            ident = identity.read_identity(conn)
        if str(ident.system_identifier) != cluster.system_identifier:
            raise PostgresError(
                f"the server at the DSN has system identifier {ident.system_identifier}, "
                f"not {cluster.system_identifier} of cluster {cluster.name!r}"
            )
        if ident.in_recovery:
            raise UsageError("backups from a standby are not supported yet: back up the primary")
        started = datetime.now(UTC)
        say(
            f"backup {backup_id}: streaming from {cluster.host}:{cluster.port} to {', '.join(t.name for t in stores)}"
        )
        stream = BaseBackupStream(cluster.dsn, label)
        repo.update(
            backup_id,
            start_lsn=stream.start.lsn,
            timeline=stream.start.timeline,
            pg_version_num=ident.version_num,
        )
        ids = ChunkMapWriter(
            [t.store.storage for t in stores],
            Identity(cluster.name, cluster.id, cluster.system_identifier, backup_id),
            codec.keys,
        )
        streamer = _Streamer(stores, codec, workers or max(2, os.cpu_count() or 2), ids)
        m = BackupManifest(
            id=backup_id,
            cluster=cluster.name,
            cluster_id=cluster.id,
            system_identifier=cluster.system_identifier,
            label=label,
            pg_version_num=ident.version_num,
            chunk_size=CHUNK_SIZE,
            timeline=stream.start.timeline,
            start_lsn=stream.start.lsn,
            start_time=started.isoformat(),
        )
        done = [0]
        try:
            for archive, reader in stream.archives():
                files = streamer.archive(reader, progress, done, stream.total_bytes)
                if archive.oid is None:
                    m.files = files
                else:
                    m.tablespaces.append(TablespaceEntry(archive.oid, archive.location, files))
        finally:
            stream.close()
        ids.close()
        m.chunk_count = ids.count
        assert stream.stop is not None
        m.stop_lsn, m.pg_manifest, m.logical_bytes = (
            stream.stop.lsn,
            stream.manifest.decode(),
            streamer.logical,
        )
        m.stop_time = datetime.now(UTC).isoformat()
        checked = check_against_pg_manifest(m)
        log.info("backup %s: %d files match PostgreSQL's backup_manifest", backup_id, checked)
        for t in stores:
            t.store.flush()
        with identity.connect(cluster.dsn) as conn:
            row = conn.execute(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            ).fetchone()
            m.stop_xmin = int(row[0]) if row else None
        seg = cluster.wal_segment_size
        first, last = (
            lsn_segno(parse_lsn(m.start_lsn), seg),
            lsn_segno(parse_lsn(m.stop_lsn) - 1, seg),
        )
        names = [segment_name(stream.stop.timeline, n, seg) for n in range(first, last + 1)]
        m.wal_start, m.wal_stop = names[0], names[-1]
        repo.update(
            backup_id,
            stop_lsn=m.stop_lsn,
            stop_time=datetime.fromisoformat(m.stop_time),
            stop_xmin=m.stop_xmin,
            wal_start=m.wal_start,
            wal_stop=m.wal_stop,
            logical_bytes=m.logical_bytes,
        )
        wait_for_wal(
            settings,
            cluster.name,
            [(p.target, p.url) for p in places],
            names,
            min(cluster.required_copies, len(places)),
            wal_timeout,
            say,
        )
        blob = m.seal(codec.keys)
        for t in stores:
            t.store.storage.put(manifest_key(cluster.name, backup_id), blob)
            t.store.storage.put(ref_key(cluster.name, backup_id), backup_id.encode())
            t.store.storage.delete(ref_key(cluster.name, backup_id, running=True))
            repo.finish_copy(backup_id, t.id, "ok", t.store.new_bytes + ids.stored + len(blob))
        stored = stores[0].store.new_bytes + ids.stored + len(blob)
        repo.update(backup_id, status="ok", stored_bytes=stored)
    except BaseException as exc:
        reason = (
            exc.message
            if isinstance(exc, PgharborError)
            else (
                "interrupted"
                if isinstance(exc, KeyboardInterrupt)
                else f"{type(exc).__name__}: {exc}"
            )
        )
        try:
            repo.update(backup_id, status="failed", error=reason[:2000])
        finally:
            for t in stores:
                with contextlib.suppress(PgharborError):
                    delete_backup_objects(t.store.storage, cluster.name, backup_id)
                    t.store.storage.delete(ref_key(cluster.name, backup_id, running=True))
        raise
    finally:
        if streamer is not None:
            streamer.close()
        for t in stores:
            t.store.close()
    return BackupResult(
        backup_id,
        cluster.name,
        m.logical_bytes,
        stored,
        len(m.all_files()),
        time.monotonic() - t0,
        m.start_lsn,
        m.stop_lsn,
        [t.name for t in stores],
    )
