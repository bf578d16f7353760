"""What a restore accepts from a backup's manifest, checked whole before anything is
written: a manifest comes from a target, and whoever can write to a target must not be
able to make a restore write anywhere else than into the data directory and the
tablespace folders, nor create what PostgreSQL would never put there.

- Paths are relative and normal: no ``..``, ``.`` or empty parts, no NUL, not absolute
  (PostgreSQL's BASE_BACKUP names ``./pg_wal/archive_status``: one leading ``./`` is
  dropped). Every entry's folder is listed before it, as a directory.
- Types f (file), d (directory), l (symlink) only; the only symlinks are
  ``pg_tblspc/<oid>`` of the data directory, for a tablespace of the backup; nothing lies
  below a symlink; a tablespace folder holds only ``PG_<version>_<catalog version>/``.
- No setuid, setgid, sticky or world-writable modes; files are written 0600 (0640 with
  group access), folders 0700 (0750), as PostgreSQL makes them.
- Every file's chunks lie inside the backup's chunk map, and no two files share one.
- Names the restore itself writes (the signal files, its temporaries) and
  ``postmaster.pid`` are not taken from a backup.

The first bad entry is named in one IntegrityError; nothing has been written then.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import replace
from pathlib import Path

from pgharbor.backup.chunkmap import chunks_of
from pgharbor.backup.chunks import MAX_CHUNK
from pgharbor.backup.manifest import BackupManifest, FileEntry
from pgharbor.errors import IntegrityError, UsageError

# written under another name and renamed into place last: a data directory without
# pg_control never starts, so one whose restore stopped halfway cannot be started by mistake
STAGED = {
    "global/pg_control": "global/pg_control.pgharbor-restore",
    "backup_label": "backup_label.pgharbor-restore",
}
WRITTEN_BY_RESTORE = frozenset(
    {"recovery.signal", "standby.signal", "postmaster.pid", "postmaster.opts", *STAGED.values()}
)
_TABLESPACE_LINK = re.compile(r"pg_tblspc/[0-9]+")
_VERSION_DIR = re.compile(r"PG_[0-9]+_[0-9]+")
_OID = re.compile(r"[0-9]+")
FORBIDDEN_BITS = 0o7002  # setuid, setgid, sticky, world-writable
MAX_PATH = 1024


def file_mode(mode: int) -> int:
    return 0o600 | (mode & 0o040)


def dir_mode(mode: int) -> int:
    return 0o700 | (mode & 0o050)


class _Bad(Exception):
    pass


def clean_path(path: object) -> str:
    """The normal form of a manifest path, or _Bad saying why it has none."""
    if not isinstance(path, str) or not path:
        raise _Bad("is not a relative path")
    if path.startswith("./"):
        path = path[2:]
    if "\0" in path or path.startswith("/"):
        raise _Bad("is absolute" if path.startswith("/") else "holds a NUL byte")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _Bad("is not a normal relative path (empty, '.' or '..' parts)")
    if len(path.encode()) > MAX_PATH or any(len(p.encode()) > 255 for p in parts):
        raise _Bad("is too long")
    return path


def _check_entry(f: FileEntry, m: BackupManifest) -> None:
    if f.type not in ("f", "d", "l"):
        raise _Bad(f"has type {f.type!r} (only files, directories and symlinks)")
    if type(f.mode) is not int or not 0 <= f.mode <= 0o7777:
        raise _Bad(f"has mode {f.mode!r}")
    if f.type != "l" and f.mode & FORBIDDEN_BITS:  # a symlink's mode means nothing
        raise _Bad(f"has mode {f.mode:04o} (setuid, setgid, sticky or world-writable)")
    if type(f.size) is not int or type(f.first_chunk) is not int or f.size < 0:
        raise _Bad("has a bad size or chunk position")
    if f.type != "f" and f.size:
        raise _Bad("is not a file but has a size")
    if (
        f.type == "f"
        and not 0
        <= f.first_chunk
        <= f.first_chunk + chunks_of(f.size, m.chunk_size)
        <= m.chunk_count
    ):
        raise _Bad(f"has chunks beyond the backup's chunk map ({m.chunk_count} chunks)")


def _check_tree(
    files: list[FileEntry], m: BackupManifest, where: str, links: set[str] | None
) -> list[FileEntry]:
    """Entries of one tree in normal form. ``links``: the symlinks this tree may hold
    (pg_tblspc/<oid> in the data directory), None for a tablespace tree."""
    seen: dict[str, str] = {}
    out: list[FileEntry] = []
    for f in files:
        shown = f.path if isinstance(f.path, str) else repr(f.path)
        try:
            path = clean_path(f.path)
            _check_entry(f, m)
            parent = path.rpartition("/")[0]
            if parent and seen.get(parent) == "l":
                raise _Bad("lies below a symlink")
            if parent and seen.get(parent) != "d":
                raise _Bad("is not below a directory listed before it")
            if path in seen:
                raise _Bad("is listed twice")
            if links is None and not _VERSION_DIR.fullmatch(path.split("/")[0]):
                raise _Bad("is not below PG_<version>_<catalog version>/")
            if links is not None and path in WRITTEN_BY_RESTORE:
                raise _Bad("is written by the restore, never taken from a backup")
            if f.type == "l" and (links is None or path not in links):
                raise _Bad("is a symlink (only pg_tblspc/<oid> of a tablespace of the backup)")
        except _Bad as exc:
            raise IntegrityError(
                f"backup {m.id}: manifest entry {shown[:200]!r} in {where} {exc}; "
                "refusing the backup, nothing was written"
            ) from None
        seen[path] = f.type
        out.append(replace(f, path=path))
    return out


def _check_chunks(m: BackupManifest) -> None:
    """Files' chunk ranges never overlap (each file has its own ids)."""
    ranges = sorted(
        (f.first_chunk, f.first_chunk + chunks_of(f.size, m.chunk_size), f.path)
        for f in m.all_files()
        if f.type == "f" and f.size
    )
    for (_, end, _), (start, _, path) in itertools.pairwise(ranges):
        if start < end:
            raise IntegrityError(
                f"backup {m.id}: manifest entry {path[:200]!r} shares chunks with another file; "
                "refusing the backup, nothing was written"
            )


def check_manifest(m: BackupManifest) -> BackupManifest:
    """The manifest with every path in normal form, or IntegrityError naming the first bad
    entry (see the module)."""
    if type(m.chunk_size) is not int or not 0 < m.chunk_size <= MAX_CHUNK:
        raise IntegrityError(f"backup {m.id}: manifest has a bad chunk size {m.chunk_size!r}")
    if type(m.chunk_count) is not int or m.chunk_count < 0:
        raise IntegrityError(f"backup {m.id}: manifest has a bad chunk count {m.chunk_count!r}")
    oids = [t.oid for t in m.tablespaces]
    for oid in oids:
        if not isinstance(oid, str) or not _OID.fullmatch(oid) or oids.count(oid) > 1:
            raise IntegrityError(f"backup {m.id}: manifest has a bad tablespace oid {oid!r}")
    links = {f"pg_tblspc/{oid}" for oid in oids}
    files = _check_tree(m.files, m, "the data directory", links)
    have = {f.path for f in files if f.type == "f"}
    for needed in ("PG_VERSION", *STAGED):
        if needed not in have:
            raise IntegrityError(f"backup {m.id}: manifest has no {needed}: not a base backup")
    spaces = [
        replace(t, files=_check_tree(t.files, m, f"tablespace {t.oid}", None))
        for t in m.tablespaces
    ]
    checked = replace(m, files=files, tablespaces=spaces)
    _check_chunks(checked)
    return checked


def tablespace_locations(
    m: BackupManifest, mapping: dict[str, str], pgdata: Path, delta: bool
) -> dict[str, Path]:
    """Where each tablespace goes. A folder that is not empty is refused, and with --delta
    allowed only when this data directory already uses it for that tablespace
    (``pg_tblspc/<oid>`` points to it) or --tablespace-map names it: a manifest alone
    never makes a restore clean up a folder of its choosing."""
    unknown = set(mapping) - {t.location for t in m.tablespaces} - {t.oid for t in m.tablespaces}
    if unknown:
        raise UsageError(
            f"--tablespace-map names no tablespace of the backup: {', '.join(sorted(unknown))}"
        )
    locations: dict[str, Path] = {}
    for t in m.tablespaces:
        mapped = mapping.get(t.location) or mapping.get(t.oid)
        location = Path(mapped or t.location)
        locations[t.oid] = location
        if not (location.is_dir() and any(location.iterdir())):
            continue
        link = pgdata / "pg_tblspc" / t.oid
        used = link.is_symlink() and os.readlink(link) == str(location)
        if not delta or not (mapped or used):
            raise UsageError(
                f"tablespace folder {location} is not empty"
                + (f" and {link} does not point to it" if delta else ""),
                hint="map it elsewhere with --tablespace-map OLD=NEW"
                + ("" if delta else ", or use --delta"),
            )
    check_locations(pgdata, locations)
    return locations


def check_locations(pgdata: Path, locations: dict[str, Path]) -> None:
    """Tablespace folders are absolute, normal, and neither inside the data directory,
    nor around it, nor inside one another."""
    roots = [("the data directory", _real(pgdata))] + [
        (f"tablespace {oid}", _real(loc)) for oid, loc in locations.items()
    ]
    for oid, loc in locations.items():
        text = str(loc)
        if not loc.is_absolute() or os.path.normpath(text) != text or "\0" in text:
            raise UsageError(
                f"tablespace {oid}: location {text[:200]!r} is not an absolute, normal path",
                hint="map it elsewhere with --tablespace-map OLD=NEW",
            )
        for what, other in roots:
            if what == f"tablespace {oid}":
                continue
            real = _real(loc)
            if real == other or real.is_relative_to(other) or other.is_relative_to(real):
                raise UsageError(
                    f"tablespace {oid}: location {text[:200]} overlaps {what} ({other})",
                    hint="map it elsewhere with --tablespace-map OLD=NEW",
                )


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
