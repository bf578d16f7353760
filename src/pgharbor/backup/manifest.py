"""A backup's manifest: every file of every tablespace with where its chunk ids start in
the backup's chunk map (see chunkmap), the backup's position in WAL, and PostgreSQL's own
backup_manifest. Stored (as an envelope, so it is
self-describing and checksummed, and encrypted when the cluster has a key: file names and
sizes are not for the target to see) at ``<cluster>/backups/<id>/manifest`` on each target."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pgharbor import envelope
from pgharbor.backup.chunkmap import ChunkMapReader
from pgharbor.errors import IntegrityError

if TYPE_CHECKING:
    from pgharbor.crypto import Keyring

FORMAT = "pgharbor-backup/2"


@dataclass
class FileEntry:
    path: str
    type: str  # "f" file, "d" directory, "l" symlink
    mode: int
    size: int = 0
    mtime: int = 0
    link: str | None = None
    sha256: str | None = None
    first_chunk: int = 0  # its ids: chunk map [first_chunk, first_chunk + chunks_of(size))


@dataclass
class TablespaceEntry:
    oid: str
    location: str
    files: list[FileEntry] = field(default_factory=list)


@dataclass
class BackupManifest:
    id: str
    cluster: str
    cluster_id: str
    system_identifier: str
    label: str
    pg_version_num: int
    chunk_size: int
    timeline: int = 0
    start_lsn: str = ""
    stop_lsn: str = ""
    start_time: str = ""
    stop_time: str = ""
    stop_xmin: int | None = None
    wal_start: str = ""
    wal_stop: str = ""
    logical_bytes: int = 0
    chunk_count: int = 0  # ids in the chunk map
    files: list[FileEntry] = field(default_factory=list)  # the data directory
    tablespaces: list[TablespaceEntry] = field(default_factory=list)
    pg_manifest: str = ""
    format: str = FORMAT

    def all_files(self) -> list[FileEntry]:
        return self.files + [f for t in self.tablespaces for f in t.files]

    def chunkmap(self, fetch: Callable[[str], bytes], keys: Keyring | None) -> ChunkMapReader:
        """The backup's chunk ids, read part by part through fetch(key)."""
        return ChunkMapReader(fetch, self.cluster, self.id, self.chunk_count, keys)

    def seal(self, keys: Keyring | None = None) -> bytes:
        data = json.dumps(asdict(self), separators=(",", ":")).encode()
        meta = envelope.Meta(
            kind="backup-manifest",
            name=self.id,
            cluster=self.cluster,
            cluster_id=self.cluster_id,
            system_identifier=self.system_identifier,
            size=len(data),
            sha256=envelope.sha256(data),
            compression="zstd",
        )
        return envelope.seal(meta, envelope.compress(data, "zstd", 3), keys)

    @classmethod
    def unseal(cls, blob: bytes, keys: Keyring | None = None) -> BackupManifest:
        meta, data = envelope.unseal(blob, keys)
        if meta.kind != "backup-manifest":
            raise IntegrityError(f"{meta.name}: not a backup manifest ({meta.kind})")
        doc: dict[str, Any] = json.loads(data)
        if doc.get("format") != FORMAT:
            raise IntegrityError(
                f"backup {meta.name}: unknown manifest format {doc.get('format')!r}"
            )
        doc["files"] = [FileEntry(**f) for f in doc["files"]]
        doc["tablespaces"] = [
            TablespaceEntry(t["oid"], t["location"], [FileEntry(**f) for f in t["files"]])
            for t in doc["tablespaces"]
        ]
        return cls(**doc)


def check_against_pg_manifest(m: BackupManifest, checksums: Mapping[str, str]) -> int:
    """Compare every file PostgreSQL's backup_manifest lists with what was stored: its
    size, and its checksum in the manifest's algorithm with ``checksums`` (what the
    backup computed over the bytes it stored, by the manifest's path). Returns the number
    of files checked; raises IntegrityError on a mismatch."""
    try:
        pg = json.loads(m.pg_manifest)
    except ValueError as exc:
        raise IntegrityError(f"PostgreSQL's backup_manifest is not JSON: {exc}") from None
    stored: dict[str, FileEntry] = {f.path: f for f in m.files if f.type == "f"}
    for t in m.tablespaces:
        for f in t.files:
            if f.type == "f":
                stored[f"pg_tblspc/{t.oid}/{f.path}"] = f
    checked = 0
    for entry in pg.get("Files", []):
        path = entry["Path"]
        got = stored.get(path)
        if got is None:
            raise IntegrityError(f"backup_manifest lists {path}, which was not stored")
        if got.size != int(entry["Size"]):
            raise IntegrityError(
                f"{path}: stored {got.size} bytes, backup_manifest says {entry['Size']}"
            )
        algorithm = entry.get("Checksum-Algorithm", "NONE")
        if algorithm != "NONE" and checksums.get(path) != str(entry.get("Checksum")).lower():
            raise IntegrityError(f"{path}: {algorithm} checksum differs from backup_manifest")
        checked += 1
    return checked
