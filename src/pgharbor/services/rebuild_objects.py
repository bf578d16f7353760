"""Catalog rebuild, second step: the objects of one cluster on one target, read back
into catalog rows (services.rebuild). Nothing is invented: an object whose header or
manifest cannot be read, or that names another cluster, is skipped and reported.

WAL copy rows come from each object's header alone (name, cluster, system identifier,
size and SHA-256, as ``wal push`` records them), except encrypted ones: their size and
checksum are inside the ciphertext, so those are read whole and decrypted with the
cluster's keys. A backup is recorded when its manifest reads back and its final ref
(``chunks/refs/CLUSTER/ID``) is there: a manifest without one belongs to a backup that
never finished, or one being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgharbor import envelope
from pgharbor.backup.manifest import BackupManifest
from pgharbor.crypto import Keyring
from pgharbor.domain.wal import parse_name
from pgharbor.errors import EncryptionError, PgharborError
from pgharbor.model import Cluster
from pgharbor.storage.base import Storage
from pgharbor.storage.layout import (
    REFS,
    manifest_backup,
    manifest_key,
    wal_name_of,
    wal_prefix,
)

MAX_LISTED = 10  # problems listed one by one per cluster and target; the rest counted


@dataclass
class Found:
    """What one cluster's folder on one target gave."""

    target: str
    wal_rows: list[dict[str, Any]] = field(default_factory=list)
    backups: dict[str, tuple[BackupManifest, int]] = field(default_factory=dict)  # id -> bytes
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    no_key: int = 0  # encrypted objects without a configured key

    def skip(self, what: str) -> None:
        self.skipped += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(what)

    def unreadable(self, where: str, exc: PgharborError, keys: Keyring | None) -> None:
        """An object that could not be read: counted once per cluster and target when
        it is encrypted and the cluster has no key, else listed."""
        if isinstance(exc, EncryptionError) and (keys is None or not keys.keys):
            self.skipped += 1
            self.no_key += 1
        else:
            self.skip(f"{where}: {exc.message}")

    def summary(self, cluster: str) -> list[str]:
        out = list(self.problems)
        if self.no_key:
            out.append(
                f"{self.no_key} encrypted object(s) of {cluster} on {self.target} skipped: no "
                f"encryption key is configured for cluster {cluster!r} (hint: set "
                f"encryption_key_file or encryption_key_env in [clusters.{cluster}] of the "
                "config file, then rebuild again)"
            )
        unlisted = self.skipped - self.no_key - len(self.problems)
        if unlisted > 0:
            out.append(f"{cluster} on {self.target}: {unlisted} more object(s) skipped")
        return out


def _header(storage: Storage, key: str) -> envelope.Meta:
    head = storage.get_range(key, 0, envelope.HEAD_READ)
    if len(head) >= envelope.PREFIX and envelope.header_length(head) > len(head):
        head = storage.get_range(key, 0, envelope.header_length(head))
    return envelope.read_meta(head)


def _wal_meta(storage: Storage, key: str, c: Cluster, keys: Keyring | None) -> envelope.Meta:
    meta = _header(storage, key)
    if meta.encryption is not None:  # size and checksum are in the ciphertext
        meta, _ = envelope.unseal(storage.get(key), keys, max_size=c.wal_segment_size)
    elif keys is not None and keys.required:
        raise keys.refuse_plaintext(meta.name or key)
    return meta


def _wal_problem(meta: envelope.Meta, name: str, c: Cluster) -> str | None:
    if meta.kind != "wal" or meta.name != name:
        return f"holds {meta.kind} {meta.name!r}"
    if meta.system_identifier != c.system_identifier:
        return f"belongs to system {meta.system_identifier}"
    if meta.cluster_id and meta.cluster_id != c.id:
        return f"belongs to cluster id {meta.cluster_id}"
    return None


def read_wal(
    storage: Storage,
    c: Cluster,
    target_id: str,
    keys: Keyring | None,
    when: str,
    out: Found,
) -> None:
    """One copy row per readable WAL object of the cluster on this target."""
    for obj in storage.list(wal_prefix(c.name)):
        name = wal_name_of(c.name, obj.key)
        where = f"{obj.key} on {out.target}"
        try:
            wal = parse_name(name or "")
            meta = _wal_meta(storage, obj.key, c, keys)
        except PgharborError as exc:
            out.unreadable(where, exc, keys)
            continue
        why = _wal_problem(meta, wal.name, c)
        if why is not None:
            out.skip(f"{where}: {why}; skipped")
            continue
        out.wal_rows.append(
            {
                "cluster_id": c.id,
                "target_id": target_id,
                "name": wal.name,
                "timeline": wal.timeline,
                "size": meta.size,
                "stored_size": obj.size,
                "checksum": "sha256:" + meta.sha256,
                "archived_at": when,
                "status": "ok",
                "detail": None,
            }
        )


def _manifest(storage: Storage, c: Cluster, backup_id: str, keys: Keyring | None) -> Any:
    m = BackupManifest.unseal(storage.get(manifest_key(c.name, backup_id)), keys)
    if m.id != backup_id or m.system_identifier != c.system_identifier or m.cluster_id != c.id:
        return f"describes backup {m.id} of system {m.system_identifier}, cluster id {m.cluster_id}"
    return m


def read_backups(storage: Storage, c: Cluster, keys: Keyring | None, out: Found) -> None:
    """Every finished backup of the cluster on this target, with the bytes of its own
    objects (manifest and chunk map; the chunks are shared, not counted)."""
    sizes: dict[str, int] = {}
    manifests = []
    for obj in storage.list(f"{c.name}/backups/"):
        backup_id = obj.key.removeprefix(f"{c.name}/backups/").partition("/")[0]
        sizes[backup_id] = sizes.get(backup_id, 0) + obj.size
        if manifest_backup(c.name, obj.key) is not None:
            manifests.append(backup_id)
    refs = {o.key.rpartition("/")[2] for o in storage.list(f"{REFS}{c.name}/")}
    for backup_id in manifests:
        where = f"backup {backup_id} of {c.name} on {out.target}"
        if backup_id not in refs:
            out.skip(f"{where}: a manifest without its ref (never finished, or being deleted)")
            continue
        try:
            m = _manifest(storage, c, backup_id, keys)
        except PgharborError as exc:
            out.unreadable(where, exc, keys)
            continue
        except (ValueError, TypeError, KeyError) as exc:  # a manifest of another shape
            out.skip(f"{where}: manifest unreadable: {exc!r}"[:300])
            continue
        if isinstance(m, str):
            out.skip(f"{where}: its manifest {m}; skipped")
            continue
        out.backups[backup_id] = (m, sizes[backup_id])
    unfinished = {r.removesuffix(".running") for r in refs if r.endswith(".running")}
    for backup_id in sorted(unfinished - refs - set(manifests)):
        out.notes.append(
            f"backup {backup_id} of {c.name} on {out.target} never finished: not recorded "
            "(a backup gc removes what it left)"
        )


def backup_row(m: BackupManifest, stored_bytes: int) -> dict[str, Any]:
    """The catalog row of a finished backup, from its manifest."""

    def when(text: str) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    start = when(m.start_time)
    assert start is not None, "a manifest always has its start time"
    return {
        "id": m.id,
        "cluster_id": m.cluster_id,
        "label": m.label,
        "timeline": m.timeline or None,
        "start_lsn": m.start_lsn or None,
        "stop_lsn": m.stop_lsn or None,
        "start_time": start,
        "stop_time": when(m.stop_time),
        "stop_xmin": m.stop_xmin,
        "logical_bytes": m.logical_bytes,
        "stored_bytes": stored_bytes,
        "wal_start": m.wal_start or None,
        "wal_stop": m.wal_stop or None,
        "pg_version_num": m.pg_version_num,
        "host": "",
        "pid": None,
        "error": None,
    }
