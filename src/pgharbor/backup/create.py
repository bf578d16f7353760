"""backup create: stream a base backup from the cluster into each target's chunk store.

Nothing is written locally: the server's tar stream is cut into fixed-size chunks at
file offsets (PostgreSQL changes pages in place, so unchanged pages keep their chunks),
hashed and compressed on worker threads with a bounded window (memory does not grow
with the database), and only chunks a target lacks are stored (see backup.stream). The
manifest is written last, after every file was checked against PostgreSQL's
backup_manifest and all WAL the backup needs is archived: until then nothing a restore
could pick exists.

A ``backup`` lease on every target is taken before the chunk index is loaded and held to
the end, so no garbage collection frees a chunk this backup counts on. Before the
manifest is written the lease is confirmed and so is every pack the backup relies on;
after the refs are written the lease is confirmed once more (a GC that ran meanwhile
must have taken it over first): otherwise the backup fails instead of becoming ``ok``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pgharbor import faultpoint
from pgharbor.access import chunk_codec
from pgharbor.backup.chunkmap import ChunkMapWriter, Identity, delete_backup_objects
from pgharbor.backup.chunks import ChunkStore
from pgharbor.backup.lease import Lease, LeaseGroup, refuse_root
from pgharbor.backup.manifest import BackupManifest, TablespaceEntry, check_against_pg_manifest
from pgharbor.backup.stream import CHUNK_SIZE, Progress, Streamer, TargetStore
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.wal import lsn_segno, parse_lsn, segment_name
from pgharbor.errors import PgharborError, UsageError
from pgharbor.model import Placement
from pgharbor.settings import Settings
from pgharbor.storage.claim import check_claim
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import manifest_key, ref_key, wal_key

if TYPE_CHECKING:
    from pgharbor.pg.basebackup import BaseBackupStream

log = logging.getLogger(__name__)
Say = Callable[[str], None]


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


def _new_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def wait_for_wal(
    settings: Settings,
    cluster: str,
    placements: list[tuple[str, str]],
    names: list[str],
    required: int,
    timeout: float,
    say: Say,
) -> None:
    """Wait until every WAL file in ``names`` is on at least ``required`` placements."""
    from pgharbor.domain.wal import parse_name

    storages = [open_storage(url, settings.target_options(name)) for name, url in placements]
    deadline = time.monotonic() + timeout
    pending = list(names)
    said = False
    pause = 0.02  # the last segment is usually archived within a few tens of ms
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
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


def _places(catalog: Catalog, cluster: str, target: str | None) -> list[Placement]:
    places = [p for p in catalog.placements(cluster) if p.active]
    if target is not None:
        places = [p for p in places if p.target == target]
        if not places:
            raise UsageError(f"cluster {cluster!r} has no active placement on target {target!r}")
    if not places:
        raise UsageError(f"cluster {cluster!r} has no active placements to back up to")
    return places


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PgharborError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


class _Backup:
    """One backup being taken; its steps in order (see create_backup)."""

    def __init__(
        self, catalog: Catalog, settings: Settings, cluster_name: str, target: str | None
    ) -> None:
        self.settings = settings
        self.cluster = catalog.cluster(cluster_name)
        self.places = _places(catalog, cluster_name, target)
        self.codec = chunk_codec(settings, self.cluster.name, [p.target for p in self.places])
        self.stores = [
            TargetStore(
                p.target_id,
                p.target,
                ChunkStore(open_storage(p.url, settings.target_options(p.target)), self.codec),
            )
            for p in self.places
        ]
        self.repo = BackupRepo(catalog)
        self.id = _new_id()
        owner = f"backup {self.cluster.name}/{self.id}"
        self.leases = LeaseGroup(
            [
                Lease(t.store.storage, "backup", owner, on_renew=self._heartbeat if not i else None)
                for i, t in enumerate(self.stores)
            ]
        )
        c = self.cluster
        self.ids = ChunkMapWriter(
            [t.store.storage for t in self.stores],
            Identity(c.name, c.id, c.system_identifier, self.id),
            self.codec.keys,
        )
        self.streamer: Streamer | None = None
        self.stop_timeline = 0

    def _heartbeat(self) -> None:
        self.repo.heartbeat(self.id)

    def close(self) -> None:
        if self.streamer is not None:
            self.streamer.close()
        for t in self.stores:
            t.store.close()

    # -- the steps --------------------------------------------------------------------
    def check_claims(self) -> None:
        """Every target must be the storage its placement was set up on (its claim of
        the cluster's folder is there): a copy counts only where that was checked."""
        c = self.cluster
        for t in self.stores:
            check_claim(t.store.storage, c.name, c.system_identifier, t.id)

    def begin(self) -> None:
        """Record the backup, mark it on the targets, load their chunk indexes."""
        self.repo.begin(
            self.id,
            self.cluster.id,
            f"pgharbor {self.id}",
            [t.id for t in self.stores],
            socket.gethostname(),
            os.getpid(),
        )
        for t in self.stores:
            t.store.storage.put(ref_key(self.cluster.name, self.id, running=True), self.id.encode())
        faultpoint.point("backup.after_lease")
        for t in self.stores:
            # only the indexes of this cluster's packs; a corrupt one is quarantined
            t.store.load(partition=self.cluster.name)
        faultpoint.point("backup.after_index_load")

    def stream(self, workers: int | None, progress: Progress, say: Say) -> BackupManifest:
        """Take the base backup; every chunk stored and flushed, the manifest filled in."""
        from pgharbor.pg import identity
        from pgharbor.pg.basebackup import MANIFEST_CHECKSUMS, BaseBackupStream

        c = self.cluster
        with identity.connect(c.dsn) as conn:
            ident = identity.require_primary(
                conn,
                c.system_identifier,
                c.name,
                "backups from a standby are not supported yet: back up the primary",
            )
        started = datetime.now(UTC)
        say(
            f"backup {self.id}: streaming from {c.host}:{c.port} to "
            + ", ".join(t.name for t in self.stores)
        )
        stream = BaseBackupStream(c.dsn, f"pgharbor {self.id}")
        self.repo.update(
            self.id,
            start_lsn=stream.start.lsn,
            timeline=stream.start.timeline,
            pg_version_num=ident.version_num,
        )
        self.streamer = Streamer(
            self.stores,
            self.codec,
            workers or max(2, os.cpu_count() or 2),
            self.ids,
            MANIFEST_CHECKSUMS,
        )
        m = BackupManifest(
            id=self.id,
            cluster=c.name,
            cluster_id=c.id,
            system_identifier=c.system_identifier,
            label=f"pgharbor {self.id}",
            pg_version_num=ident.version_num,
            chunk_size=CHUNK_SIZE,
            timeline=stream.start.timeline,
            start_lsn=stream.start.lsn,
            start_time=started.isoformat(),
        )
        self._archives(stream, m, progress)
        return m

    def _archives(self, stream: BaseBackupStream, m: BackupManifest, progress: Progress) -> None:
        assert self.streamer is not None
        done = [0]
        try:
            for archive, reader in stream.archives():
                prefix = "" if archive.oid is None else f"pg_tblspc/{archive.oid}/"
                files = self.streamer.archive(reader, progress, done, stream.total_bytes, prefix)
                if archive.oid is None:
                    m.files = files
                else:
                    m.tablespaces.append(TablespaceEntry(archive.oid, archive.location, files))
        finally:
            stream.close()
        self.ids.close()
        m.chunk_count = self.ids.count
        assert stream.stop is not None
        m.stop_lsn, m.pg_manifest = stream.stop.lsn, stream.manifest.decode()
        m.logical_bytes = self.streamer.logical
        m.stop_time = datetime.now(UTC).isoformat()
        checked = check_against_pg_manifest(m, self.streamer.checksums)
        log.info("backup %s: %d files match PostgreSQL's backup_manifest", self.id, checked)
        for t in self.stores:
            t.store.flush()
        faultpoint.point("backup.after_flush")
        self.stop_timeline = stream.stop.timeline

    def wal(self, m: BackupManifest, wal_timeout: float, say: Say) -> None:
        """Record where the backup ends; wait until all the WAL it needs is archived."""
        from pgharbor.pg import identity

        with identity.connect(self.cluster.dsn) as conn:
            row = conn.execute(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            ).fetchone()
            m.stop_xmin = int(row[0]) if row else None
        seg = self.cluster.wal_segment_size
        first = lsn_segno(parse_lsn(m.start_lsn), seg)
        last = lsn_segno(parse_lsn(m.stop_lsn) - 1, seg)
        names = [segment_name(self.stop_timeline, n, seg) for n in range(first, last + 1)]
        m.wal_start, m.wal_stop = names[0], names[-1]
        self.repo.update(
            self.id,
            stop_lsn=m.stop_lsn,
            stop_time=datetime.fromisoformat(m.stop_time),
            stop_xmin=m.stop_xmin,
            wal_start=m.wal_start,
            wal_stop=m.wal_stop,
            logical_bytes=m.logical_bytes,
        )
        wait_for_wal(
            self.settings,
            self.cluster.name,
            [(p.target, p.url) for p in self.places],
            names,
            min(self.cluster.required_copies, len(self.places)),
            wal_timeout,
            say,
        )

    def commit(self, m: BackupManifest) -> int:
        """Confirm, write the manifest and the refs, confirm again, record ``ok``.
        Returns the bytes this backup added to its first target."""
        self.leases.check()
        for t in self.stores:
            t.store.mark()  # the cluster's next backup reads these packs' indexes
            t.store.confirm()  # every chunk de-duplicated against is still there
        blob = m.seal(self.codec.keys)
        name = self.cluster.name
        faultpoint.point("backup.before_manifest")
        for t in self.stores:
            t.store.storage.put(manifest_key(name, self.id), blob)
        faultpoint.point("backup.after_manifest")
        for t in self.stores:
            t.store.storage.put(ref_key(name, self.id), self.id.encode())
            t.store.storage.delete(ref_key(name, self.id, running=True))
        faultpoint.point("backup.after_ref")
        self.leases.check()  # a GC that started meanwhile must have taken it over first
        for t in self.stores:
            added = t.store.new_bytes + self.ids.stored + len(blob)
            self.repo.finish_copy(self.id, t.id, "ok", added)
        stored = self.stores[0].store.new_bytes + self.ids.stored + len(blob)
        self.repo.finish(self.id, stored_bytes=stored)
        return stored

    def fail(self, exc: BaseException) -> None:
        """Record the failure; remove what the backup wrote (its chunks go with a GC)."""
        try:
            self.repo.update(self.id, status="failed", error=_reason(exc)[:2000])
        finally:
            for t in self.stores:
                with contextlib.suppress(PgharborError):
                    s = t.store.storage
                    s.delete(ref_key(self.cluster.name, self.id))
                    delete_backup_objects(s, self.cluster.name, self.id)
                    s.delete(ref_key(self.cluster.name, self.id, running=True))


def create_backup(
    catalog: Catalog,
    settings: Settings,
    cluster_name: str,
    *,
    target: str | None = None,
    wal_timeout: float = 300,
    workers: int | None = None,
    progress: Progress = lambda d, t: None,
    say: Say = lambda s: None,
) -> BackupResult:
    refuse_root("backup create")
    b = _Backup(catalog, settings, cluster_name, target)
    b.repo.reap(b.cluster.id)
    t0 = time.monotonic()
    try:
        b.check_claims()  # nothing is written where the placement's claim is not found
        with b.leases:  # Busy (a GC runs): nothing was recorded or written
            try:
                b.begin()
                m = b.stream(workers, progress, say)
                b.wal(m, wal_timeout, say)
                stored = b.commit(m)
            except BaseException as exc:
                b.fail(exc)
                raise
    finally:
        b.close()
    return BackupResult(
        b.id,
        b.cluster.name,
        m.logical_bytes,
        stored,
        len(m.all_files()),
        time.monotonic() - t0,
        m.start_lsn,
        m.stop_lsn,
        [t.name for t in b.stores],
    )
