"""restore: rebuild a data directory from a backup and set up recovery to a target."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pgharbor.backup.chunks import ChunkCodec
from pgharbor.backup.manifest import BackupManifest
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.pitr import BackupPoint, RecoveryTarget, choose_backup
from pgharbor.errors import Conflict, NotFound, UsageError
from pgharbor.restore.recovery_conf import recovery_settings, write_recovery
from pgharbor.restore.source import BackupSource
from pgharbor.restore.timelines import resolve_timeline
from pgharbor.restore.writer import Writer
from pgharbor.settings import Settings
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


def check_pgdata(pgdata: Path, delta: bool) -> None:
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


def _remove_extra(root: Path, keep: set[Path]) -> int:
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        d = Path(dirpath)
        for name in filenames + [n for n in dirnames if (d / n).is_symlink()]:
            p = d / name
            if p not in keep:
                p.unlink()
                removed += 1
        for name in dirnames:
            p = d / name
            if p not in keep and p.is_dir() and not p.is_symlink():
                os.rmdir(p)
                removed += 1
    return removed


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
    from pgharbor.fleet import pgharbor_command

    cmd = pgharbor_command(settings, catalog_given=True)
    if os.environ.get("PGHARBOR_STATE_DIR"):
        cmd = f"PGHARBOR_STATE_DIR={shlex.quote(os.environ['PGHARBOR_STATE_DIR'])} {cmd}"
    from pgharbor.archive.prefetch import fast_restore_command

    return fast_restore_command(cmd, cluster)


def restore(
    catalog: Catalog,
    settings: Settings,
    cluster_name: str,
    pgdata: Path,
    target: RecoveryTarget,
    *,
    backup_id: str | None = None,
    standby: bool = False,
    primary_conninfo: str | None = None,
    tablespace_map: dict[str, str] | None = None,
    delta: bool = False,
    progress: Progress = lambda d, t: None,
    say: Callable[[str], None] = lambda s: None,
) -> RestoreResult:
    if os.geteuid() == 0:
        raise UsageError(
            "restore must run as the OS user that will run the server, not root",
            hint="runuser -u postgres -- pgharbor …",
        )
    if standby and target.kind not in ("end",):
        raise UsageError("--standby follows the primary: it takes no recovery target")
    pgdata = pgdata.absolute()
    check_pgdata(pgdata, delta)
    cluster = catalog.cluster(cluster_name)
    if standby and primary_conninfo and target.timeline == "latest":
        tli = primary_timeline(primary_conninfo, say)
        if tli is not None:
            target = replace(target, timeline=str(tli))
    repo = BackupRepo(catalog)
    places = [p for p in catalog.placements(cluster_name) if p.active]
    timeline, history = resolve_timeline(settings, cluster, places, target, repo)
    if backup_id:
        chosen = repo.get(cluster_name, backup_id)
        if chosen.status != "ok":
            raise Conflict(f"backup {backup_id} is {chosen.status}, not usable")
    else:
        points = [
            BackupPoint(b.id, b.timeline or 1, b.stop_lsn or "0/0", b.stop_time, b.stop_xmin)
            for b in repo.for_cluster(cluster_name, status="ok")
            if b.stop_time and b.stop_lsn
        ]
        if not points:
            raise NotFound(
                f"cluster {cluster_name!r} has no usable backup",
                hint=f"pgharbor backup create {cluster_name}",
            )
        chosen = repo.get(cluster_name, choose_backup(points, target, history).id)
    say(
        f"restoring backup {chosen.id} (ends {chosen.stop_lsn}, timeline {chosen.timeline}) "
        f"to {target.describe()} on timeline {timeline}"
    )
    holders = {name for _, name, status in repo.copies(chosen.id) if status == "ok"}
    storages = [
        (p.target, open_storage(p.url, settings.target_options(p.target)))
        for p in places
        if p.target in holders
    ]
    codec = ChunkCodec.for_cluster(settings, cluster.name, [n for n, _ in storages], writing=False)
    source = BackupSource(storages, codec)
    m: BackupManifest = source.manifest(cluster.name, chosen.id)
    if m.system_identifier != cluster.system_identifier:
        raise Conflict(
            f"backup {chosen.id} belongs to system {m.system_identifier}, not {cluster.system_identifier}"
        )
    mapping = dict(tablespace_map or {})
    unknown = set(mapping) - {t.location for t in m.tablespaces} - {t.oid for t in m.tablespaces}
    if unknown:
        raise UsageError(
            f"--tablespace-map names no tablespace of the backup: {', '.join(sorted(unknown))}"
        )
    locations = {
        t.oid: Path(mapping.get(t.location) or mapping.get(t.oid) or t.location)
        for t in m.tablespaces
    }
    for location in locations.values():
        if location.exists() and any(location.iterdir()) and not delta:
            raise UsageError(
                f"tablespace folder {location} is not empty",
                hint="map it elsewhere with --tablespace-map OLD=NEW, or use --delta",
            )
    writer = Writer(
        source, source.chunkmap(m), codec, m.chunk_size, delta, progress, m.logical_bytes
    )
    try:
        keep = writer.tree(pgdata, m.files)
        trees = {t.oid: writer.tree(locations[t.oid], t.files) for t in m.tablespaces}
        writer.finish()
    finally:
        writer.abort()
        source.close()
    removed = _remove_extra(pgdata, keep | {pgdata / "pg_tblspc"}) if delta else 0
    lines = []
    for t in m.tablespaces:
        location = locations[t.oid]
        if delta:
            removed += _remove_extra(location, trees[t.oid])
        link = pgdata / "pg_tblspc" / t.oid
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(location)
        lines.append(f"{t.oid} {location}\n")
    if m.tablespaces:
        (pgdata / "tablespace_map").write_text("".join(lines))
    (pgdata / "backup_manifest").write_text(m.pg_manifest)
    conf = recovery_settings(
        target,
        restore_command_line(settings, cluster.name),
        standby=standby,
        primary_conninfo=primary_conninfo,
    )
    write_recovery(pgdata, conf, standby=standby)
    pgdata.chmod(0o700)
    os.sync()
    return RestoreResult(
        chosen.id,
        str(pgdata),
        target.describe(),
        timeline,
        len(m.all_files()),
        writer.written,
        writer.unchanged,
        removed,
        source.fallbacks,
    )
