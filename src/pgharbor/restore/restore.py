"""restore: rebuild a data directory from a backup and set up recovery to a target.

Order of work, so that a restore stopped at any moment (an error, kill -9, a full disk)
leaves a data directory that PostgreSQL refuses to start, never one that starts and
silently replays the wrong thing:

1. plan (backup, timeline, target within the archive), take a ``restore`` lease on every
   target read (a GC cannot free what is being read), check the whole manifest;
   nothing is written before this.
2. disarm: move ``global/pg_control`` and ``backup_label`` to temporary names, remove
   the signal files; without pg_control the server does not start.
3. with --delta, remove what the backup does not have (symlinks it does not list, stale
   WAL, the spool and prefetch folders in pg_wal); only inside the data directory and the
   tablespace folders.
4. write every file (pg_control and backup_label under temporary names), the tablespace
   links, tablespace_map, backup_manifest, the recovery settings and the signal file.
5. sync; rename backup_label, then pg_control into place: the directory is armed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from pgharbor import faultpoint
from pgharbor.access import chunk_codec
from pgharbor.backup.chunkmap import ChunkMapReader
from pgharbor.backup.chunks import ChunkCodec
from pgharbor.backup.lease import Lease
from pgharbor.backup.manifest import BackupManifest
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.pitr import RecoveryTarget
from pgharbor.errors import (
    Busy,
    Conflict,
    PgharborError,
    StorageError,
    StoragePermissionDenied,
    UsageError,
)
from pgharbor.model import Cluster, Placement
from pgharbor.restore.place import Root
from pgharbor.restore.plan import plan_restore
from pgharbor.restore.recovery_conf import recovery_settings, write_recovery
from pgharbor.restore.source import BackupSource
from pgharbor.restore.validate import STAGED, check_manifest, tablespace_locations
from pgharbor.restore.writer import Writer
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage
from pgharbor.storage.factory import open_storage

Progress = Callable[[int, int], None]


@dataclass
class RestoreResult:
    backup_id: str
    pgdata: str
    target: str
    timeline: int
    files: int
    bytes_written: int
    files_unchanged: int = 0
    files_removed: int = 0
    fallbacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # symlinks replaced, ...
    archive_mode: str = "off"


def check_pgdata(pgdata: Path, delta: bool) -> None:
    if pgdata.is_symlink() and not pgdata.exists():
        raise UsageError(f"{pgdata} is a dangling symlink")
    if pgdata.exists() and not pgdata.is_dir():
        raise UsageError(f"{pgdata} exists and is not a directory")
    if pgdata.exists() and any(pgdata.iterdir()):
        if not delta:
            raise UsageError(
                f"{pgdata} is not empty", hint="restore into an empty folder, or use --delta"
            )
        if (pgdata / "postmaster.pid").exists():
            raise Conflict(
                f"{pgdata} holds postmaster.pid: stop the server before a --delta restore"
            )


def primary_timeline(conninfo: str, say: Callable[[str], None]) -> int | None:
    """The primary's timeline: a standby must follow it, not a newer timeline that a
    promoted copy may have left in the archive."""
    from pgharbor.errors import PostgresError
    from pgharbor.pg import identity

    try:
        with identity.connect(conninfo, timeout=5) as conn:
            row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    except PostgresError as exc:
        say(f"note: primary not reachable ({exc}); the standby follows the latest timeline")
        return None
    return int(row[0]) if row else None


def restore_command_line(settings: Settings, cluster: str) -> str:
    from pgharbor.archive.commands import restore_command

    return restore_command(settings, cluster, state_dir_env=True)


def _leases(
    stack: ExitStack, storages: list[tuple[str, Storage]], owner: str, notes: list[str]
) -> list[tuple[str, Storage]]:
    """A shared restore lease on every target read, held until the end; a target that
    cannot be reached is not read at all. Busy (a GC holds the target): one clear line."""
    leased = []
    for name, storage in storages:
        try:
            stack.enter_context(Lease(storage, "restore", owner))
        except Busy:
            raise
        except StorageError as exc:
            notes.append(f"{name}: {exc.message}; not reading from it")
            continue
        leased.append((name, storage))
    if not leased:
        raise StorageError(
            f"{owner}: no target holding the backup can be read: "
            + "; ".join(notes[-len(storages) :])
        )
    return leased


def _keep(m: BackupManifest) -> dict[str, str]:
    """What a --delta restore keeps in the data directory: the backup's entries (the
    staged names for pg_control and backup_label) and the tablespace links."""
    keep = {f.path: f.type for f in m.files}
    for final, staged in STAGED.items():
        if keep.pop(final, None) is not None:
            keep[staged] = "f"
    keep.update({f"pg_tblspc/{t.oid}": "l" for t in m.tablespaces})
    return keep


def _disarm(root: Root) -> None:
    """Make the directory unstartable before changing anything in it: pg_control and
    backup_label move to their staged names (a --delta restore compares them like any
    file), the signal files go."""
    for final, staged in STAGED.items():
        if root.kind(final) == "f":
            root.rename(final, staged)
        else:
            root.remove(final)
    for name in ("recovery.signal", "standby.signal"):
        root.remove(name)
    if root.kind("global") == "d":
        root.sync_dir("global")
    root.sync_dir()


def _arm(root: Root) -> None:
    """The last step: backup_label, then pg_control into place (everything else durable)."""
    os.sync()
    root.rename(STAGED["backup_label"], "backup_label")
    faultpoint.point("restore.before_arm")
    root.rename(STAGED["global/pg_control"], "global/pg_control")
    root.sync_dir("global")
    root.sync_dir()


def _incomplete(pgdata: Path, exc: BaseException) -> PgharborError:
    """One line: what failed, and that the data directory will not start."""
    tail = f"; {pgdata} is incomplete and will not start"
    hint = "fix that and run the restore again (with --delta it resumes)"
    if isinstance(exc, PgharborError):
        return type(exc)(f"restore failed: {exc}{tail}", hint=hint)
    assert isinstance(exc, OSError)
    failure = _os_failure(exc, tail)
    failure.hint = hint
    return failure


@dataclass
class _Job:
    """What the write phase needs."""

    pgdata: Path
    manifest: BackupManifest
    locations: dict[str, Path]
    writer: Writer
    conf: dict[str, str]
    standby: bool
    delta: bool


def _prune(root: Root, spaces: dict[str, Root], m: BackupManifest) -> int:
    """--delta: remove what the backup does not have. In a tablespace folder only below
    the backup's own version folders (PG_15_…): others may belong to another server."""
    removed = root.prune(_keep(m))
    for t in m.tablespaces:
        keep = {f.path: f.type for f in t.files}
        space = spaces[t.oid]
        tops = [p for p in keep if "/" not in p and space.kind(p) == "d"]
        removed += sum(space.prune(keep, top) for top in tops)
    return removed


def _configure(root: Root, job: _Job) -> None:
    """Tablespace links and map, PostgreSQL's backup_manifest, the recovery settings and
    the signal file."""
    m = job.manifest
    for t in m.tablespaces:
        root.symlink(f"pg_tblspc/{t.oid}", str(job.locations[t.oid]))
    if m.tablespaces:
        lines = "".join(f"{t.oid} {job.locations[t.oid]}\n" for t in m.tablespaces)
        root.write_file("tablespace_map", lines.encode())
    root.write_file("backup_manifest", m.pg_manifest.encode())
    write_recovery(root, job.conf, standby=job.standby)


def _write(job: _Job) -> tuple[int, list[str]]:
    """Steps 2 to 5 (see the module); returns the entries removed and the notes."""
    m, removed = job.manifest, 0
    with ExitStack() as stack:
        root = stack.enter_context(Root(job.pgdata))
        spaces = {oid: stack.enter_context(Root(loc)) for oid, loc in job.locations.items()}
        _disarm(root)
        faultpoint.point("restore.disarmed")
        if job.delta:
            removed += _prune(root, spaces, m)
        faultpoint.point("restore.pruned")
        job.writer.tree(root, m.files)
        for t in m.tablespaces:
            job.writer.tree(spaces[t.oid], t.files)
        job.writer.finish()
        faultpoint.point("restore.written")
        _configure(root, job)
        faultpoint.point("restore.configured")
        _arm(root)
        os.fchmod(root.fd, 0o700)
        notes = root.notes + [n for s in spaces.values() for n in s.notes]
    return removed, notes


def _source(
    stack: ExitStack,
    catalog: Catalog,
    settings: Settings,
    cluster: Cluster,
    places: list[Placement],
    backup_id: str,
    notes: list[str],
) -> tuple[BackupSource, ChunkCodec, BackupManifest]:
    """The backup's placements under restore leases, and its manifest, checked whole."""
    from pgharbor.catalog.backups import BackupRepo

    holders = {name for _, name, status in BackupRepo(catalog).copies(backup_id) if status == "ok"}
    storages = [
        (p.target, open_storage(p.url, settings.target_options(p.target)))
        for p in places
        if p.target in holders
    ]
    storages = _leases(stack, storages, f"restore {cluster.name}/{backup_id}", notes)
    codec = chunk_codec(settings, cluster.name, [n for n, _ in storages], writing=False)
    source = BackupSource(storages, codec, cluster.name)
    stack.callback(source.close)
    m = check_manifest(source.manifest(cluster.name, backup_id))
    if m.system_identifier != cluster.system_identifier:
        raise Conflict(
            f"backup {backup_id} belongs to system {m.system_identifier}, "
            f"not {cluster.system_identifier}"
        )
    return source, codec, m


def _os_failure(exc: OSError, tail: str = "") -> PgharborError:
    cls = StoragePermissionDenied if exc.errno in (errno.EACCES, errno.EPERM) else StorageError
    where = f"{exc.filename}: " if exc.filename else ""
    return cls(f"restore failed: {where}{exc.strerror or exc}{tail}")


@dataclass(frozen=True)
class Options:
    """How to restore (the command's options)."""

    backup_id: str | None = None
    standby: bool = False
    primary_conninfo: str | None = None
    tablespace_map: dict[str, str] = field(default_factory=dict)
    delta: bool = False
    archive_mode: str | None = None  # default: off, preserve for a standby


def restore(
    catalog: Catalog,
    settings: Settings,
    cluster_name: str,
    pgdata: Path,
    target: RecoveryTarget,
    options: Options = Options(),
    progress: Progress = lambda d, t: None,
    say: Callable[[str], None] = lambda s: None,
) -> RestoreResult:
    if os.geteuid() == 0:
        raise UsageError(
            "restore must run as the OS user that will run the server, not root",
            hint="runuser -u postgres -- pgharbor …",
        )
    if options.standby and target.kind not in ("end",):
        raise UsageError("--standby follows the primary: it takes no recovery target")
    if options.primary_conninfo:
        from pgharbor.pg.conninfo import refuse_password

        refuse_password(
            options.primary_conninfo,
            "--primary-conninfo",
            "it would be written into the restored postgresql.auto.conf",
        )
    if options.archive_mode is None:
        options = replace(options, archive_mode="preserve" if options.standby else "off")
    try:
        return _restore(
            catalog, settings, cluster_name, pgdata.absolute(), target, options, progress, say
        )
    except OSError as exc:  # before anything was written (after: _incomplete)
        raise _os_failure(exc) from None


def _restore(
    catalog: Catalog,
    settings: Settings,
    cluster_name: str,
    pgdata: Path,
    target: RecoveryTarget,
    opt: Options,
    progress: Progress,
    say: Callable[[str], None],
) -> RestoreResult:
    check_pgdata(pgdata, opt.delta)
    cluster = catalog.cluster(cluster_name)
    if opt.standby and opt.primary_conninfo and target.timeline == "latest":
        tli = primary_timeline(opt.primary_conninfo, say)
        if tli is not None:
            target = replace(target, timeline=str(tli))
    places = [p for p in catalog.placements(cluster_name) if p.active]
    plan = plan_restore(catalog, settings, cluster, places, target, opt.backup_id)
    chosen, notes = plan.backup, list[str]()
    point = f" (restore point at {plan.point.lsn})" if plan.point else ""
    say(
        f"restoring backup {chosen.id} (ends {chosen.stop_lsn}, timeline {chosen.timeline}) "
        f"to {target.describe()}{point} on timeline {plan.timeline}"
    )
    with ExitStack() as stack:
        source, codec, m = _source(stack, catalog, settings, cluster, places, chosen.id, notes)
        ids: ChunkMapReader = source.chunkmap(m)
        locations = tablespace_locations(m, opt.tablespace_map, pgdata, opt.delta)
        writer = Writer(source, ids, codec, m.chunk_size, opt.delta, progress, m.logical_bytes)
        stack.callback(writer.abort)
        conf = recovery_settings(
            target,
            restore_command_line(settings, cluster.name),
            standby=opt.standby,
            primary_conninfo=opt.primary_conninfo,
            archive_mode=opt.archive_mode or "off",
        )
        job = _Job(pgdata, m, locations, writer, conf, opt.standby, opt.delta)
        try:
            removed, written_notes = _write(job)
        except (PgharborError, OSError) as exc:
            raise _incomplete(pgdata, exc) from None
    return RestoreResult(
        chosen.id,
        str(pgdata),
        target.describe(),
        plan.timeline,
        len(m.all_files()),
        writer.written,
        writer.unchanged,
        removed,
        source.fallbacks,
        notes + written_notes,
        opt.archive_mode or "off",
    )
