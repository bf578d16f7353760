"""Fleet services: registering clusters, targets and placements.

The CLI calls these; they take a Catalog and Settings explicitly and return models.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import uuid
from dataclasses import dataclass

from pgharbor.catalog.repo import Catalog, now
from pgharbor.catalog.urls import parse_catalog_url, redact_conninfo, strip_password
from pgharbor.errors import ConfigError, Conflict, UsageError
from pgharbor.model import Cluster, Placement, Target
from pgharbor.pg import identity
from pgharbor.pg.conninfo import refuse_password
from pgharbor.plain import absolute_path
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage
from pgharbor.storage.claim import CLUSTER_FORMAT, TARGET_FORMAT, read_json
from pgharbor.storage.factory import open_storage, validate_url
from pgharbor.storage.layout import TARGET_MARKER, descriptor_key

log = logging.getLogger(__name__)
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(kind: str, name: str) -> str:
    if not name or not set(name) <= NAME_CHARS or name.startswith(".") or len(name) > 128:
        raise UsageError(
            f"bad {kind} name {name!r}: use letters, digits, '-', '_' and '.' (not leading)"
        )
    return name


def storage_identity(url: str, options: dict[str, object]) -> tuple[object, ...]:
    """What names the storage behind a URL, whatever the spelling: a file root's device
    and inode (or its resolved path), an SSH server's user, host, port and folder, a
    bucket's endpoint and prefix."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme == "file":
        root = os.path.realpath(unquote(parts.path))
        try:
            st = os.stat(root)
            return ("file", st.st_dev, st.st_ino)
        except OSError:
            return ("file", root)
    if parts.scheme == "ssh":
        from pgharbor.storage.ssh import parse_ssh_url

        t = parse_ssh_url(url)
        return ("ssh", t.user, t.host.lower(), t.port, os.path.normpath(t.root))
    query = dict(parse_qsl(parts.query))
    endpoint = str(options.get("endpoint_url") or query.get("endpoint_url") or "")
    prefix = "/".join(p for p in unquote(parts.path).split("/") if p)
    return (parts.scheme, endpoint.rstrip("/").lower(), parts.netloc, prefix)


def _marker(target_id: str, name: str) -> bytes:
    return json.dumps(
        {"format": TARGET_FORMAT, "id": target_id, "name": name}, indent=1, sort_keys=True
    ).encode()


def _marker_id(storage: Storage) -> str | None:
    doc = read_json(storage, TARGET_MARKER)
    if doc is None:
        return None
    if doc.get("format") != TARGET_FORMAT or not isinstance(doc.get("id"), str):
        raise Conflict(f"{storage.url}/{TARGET_MARKER} exists and is not a pgharbor target marker")
    return str(doc["id"])


def add_target(catalog: Catalog, settings: Settings, name: str, url: str) -> Target:
    """Register a target after claiming its storage: ``pgharbor-target.json`` at its root
    names the target, so the same storage can never be added twice (under another URL
    spelling or another name) and *required copies* always counts distinct storage."""
    check_name("target", name)
    validate_url(url)
    existing = catalog.targets()
    if any(t.name == name for t in existing):
        raise Conflict(f"target {name!r} already exists")
    if url.startswith("file:"):
        root = storage_identity(url, {})
        if len(root) == 2:
            raise UsageError(
                f"target root {url.removeprefix('file://')} does not exist",
                hint="create it, owned by the OS user that runs pgharbor",
            )
    ident = storage_identity(url, settings.target_options(name))
    for t in existing:
        if storage_identity(t.url, settings.target_options(t.name)) == ident:
            raise Conflict(f"target {name!r} would be the same storage as target {t.name!r}")
    storage = open_storage(url, settings.target_options(name))
    try:
        target_id = _marker_id(storage)
        known = {t.id: t.name for t in existing}
        if target_id in known:
            raise Conflict(
                f"target {name!r} is the same storage as target {known[target_id]!r} "
                f"(its {TARGET_MARKER} names that target)"
            )
        if target_id is None:  # else: a target of an earlier catalog; keep its id
            target_id = str(uuid.uuid4())
            storage.put(TARGET_MARKER, _marker(target_id, name), overwrite=False)
    finally:
        storage.close()
    return catalog.add_target(name, url, target_id=target_id)


@dataclass(frozen=True)
class Registration:
    cluster: Cluster
    archive_command: str
    restore_command: str
    adopted_fingerprint: bool


def pgharbor_command(settings: Settings, catalog_given: bool) -> str:
    """The command line PostgreSQL should run: this executable, with the same catalog or
    config file the operator used. A catalog the config file supplied is left to that
    file (--config); one given otherwise is carried with --catalog, but never its
    password: a note (a log warning) then says where the password must be instead."""
    exe = os.path.abspath(sys.argv[0]) if os.path.basename(sys.argv[0]) == "pgharbor" else None
    exe = exe or shutil.which("pgharbor") or "pgharbor"
    parts = [exe]
    if settings.config_file is not None:
        parts += ["--config", absolute_path(settings.config_file)]
    carry = catalog_given or settings.config_file is None
    if settings.catalog and carry and settings.catalog_source != "config":
        url = settings.catalog
        if parse_catalog_url(url).kind == "postgresql":
            url, had_password = strip_password(url)
            if redact_conninfo(url) != url:  # fail closed: never a password in a command
                raise ConfigError(
                    "the catalog URL cannot be written into a command line without its password",
                    hint="set catalog in a config file (mode 0600) and pass --config",
                )
            if had_password:
                log.warning(
                    "note: the catalog password is left out of this command line: the OS "
                    "user that runs it (postgres) needs it in its ~/.pgpass (mode 0600), in "
                    "the file PGPASSFILE names, or in a service file"
                )
        parts += ["--catalog", url]
    return " ".join(shlex.quote(p) for p in parts)


def conf_line(setting: str, command: str) -> str:
    return f"{setting} = '{command.replace(chr(39), chr(39) * 2)}'"


def register_cluster(
    catalog: Catalog,
    settings: Settings,
    name: str,
    dsn: str,
    *,
    idc: str = "",
    platform: str = "",
    required_copies: int = 1,
    catalog_given: bool = True,
    archive_async: bool = False,
) -> Registration:
    check_name("cluster", name)
    if required_copies < 1:
        raise UsageError("required copies must be at least 1")
    refuse_password(dsn, "the DSN", "it would be stored in the catalog and shown in listings")
    with identity.connect(dsn) as conn:
        ident = identity.read_identity(conn)
        if ident.in_recovery:
            raise UsageError(
                "the server is a standby (in recovery): register its primary",
            )
        fp = identity.read_fingerprint(conn)
        adopted = False
        cluster_id: str | None = None
        if fp is not None:
            known = {c.id: c.name for c in catalog.clusters()}
            if fp[0] in known:
                raise Conflict(
                    f"this database is already registered as cluster {known[fp[0]]!r} "
                    f"(fingerprint {fp[0]})"
                )
            cluster_id, adopted = fp[0], True  # a catalog rebuilt: keep the cluster's id
        values = {
            "name": name,
            "idc": idc,
            "platform": platform,
            "software": "postgresql",
            "version": ident.version,
            "version_num": ident.version_num,
            "host": ident.host,
            "port": ident.port,
            "dsn": dsn,
            "system_identifier": str(ident.system_identifier),
            "wal_segment_size": ident.wal_segment_size,
            "required_copies": required_copies,
            "archive_async": archive_async,
        }
        if cluster_id:
            values["id"] = cluster_id
        cluster = catalog.add_cluster(values)
        try:
            identity.write_fingerprint(conn, cluster.id, now())
        except BaseException:
            catalog.delete_cluster(cluster.id)
            raise
    archive, restore = command_lines(settings, cluster, catalog_given)
    return Registration(cluster, archive, restore, adopted)


def command_lines(settings: Settings, cluster: Cluster, catalog_given: bool) -> tuple[str, str]:
    """The archive_command and restore_command lines for the cluster's mode."""
    from pgharbor.archive.prefetch import fast_restore_command
    from pgharbor.archive.spool import async_archive_command

    cmd = pgharbor_command(settings, catalog_given)
    name = shlex.quote(cluster.name)
    push = (
        async_archive_command(cmd, cluster.name)
        if cluster.archive_async
        else f"{cmd} wal push {name} %p"
    )
    return (
        conf_line("archive_command", push),
        conf_line("restore_command", fast_restore_command(cmd, cluster.name)),
    )


def descriptor(cluster: Cluster, target_id: str) -> bytes:
    return json.dumps(
        {
            "format": CLUSTER_FORMAT,
            "cluster_id": cluster.id,
            "name": cluster.name,
            "system_identifier": cluster.system_identifier,
            "wal_segment_size": cluster.wal_segment_size,
            "version": cluster.version,
            "target_id": target_id,
        },
        indent=1,
        sort_keys=True,
    ).encode()


def add_placement(
    catalog: Catalog, settings: Settings, cluster_name: str, target_name: str, priority: int
) -> Placement:
    """Add a placement after claiming the cluster's folder on the target: the folder's
    descriptor names the cluster and the target, so two clusters can never share one
    folder, and a copy counts only where that claim is found (see storage.claim)."""
    if priority < 0:
        raise UsageError("priority must be 0 or more (lower is tried first)")
    cluster = catalog.cluster(cluster_name)
    target = catalog.target(target_name)
    storage = open_storage(target.url, settings.target_options(target.name))
    key = descriptor_key(cluster.name)
    try:
        marker = _marker_id(storage)
        if marker is not None and marker != target.id:
            raise Conflict(
                f"the storage of target {target.name!r} is marked as another target "
                f"(id {marker}): the same storage under two target names?"
            )
        if marker is None:  # a target added before storage was marked
            storage.put(TARGET_MARKER, _marker(target.id, target.name), overwrite=False)
        current = read_json(storage, key)
        if current and current.get("system_identifier") != cluster.system_identifier:
            raise Conflict(
                f"folder {cluster.name}/ on target {target.name} belongs to another cluster "
                f"(system identifier {current.get('system_identifier')})"
            )
        if current and current.get("target_id") not in (None, target.id):
            raise Conflict(
                f"folder {cluster.name}/ on target {target.name} was claimed through another "
                "target: the same storage under two target names?"
            )
        if not current:
            storage.put(key, descriptor(cluster, target.id), overwrite=False)
    finally:
        storage.close()
    return catalog.add_placement(cluster_name, target_name, priority)
