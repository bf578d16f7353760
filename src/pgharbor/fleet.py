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
from dataclasses import dataclass

from pgharbor.catalog.models import Cluster, Placement, Target
from pgharbor.catalog.repo import Catalog, now
from pgharbor.catalog.urls import parse_catalog_url, redact_conninfo, strip_password
from pgharbor.errors import ConfigError, Conflict, StorageError, UsageError
from pgharbor.pg import identity
from pgharbor.plain import absolute_path
from pgharbor.settings import Settings
from pgharbor.storage.factory import open_storage, validate_url
from pgharbor.storage.layout import descriptor_key

log = logging.getLogger(__name__)
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(kind: str, name: str) -> str:
    if not name or not set(name) <= NAME_CHARS or name.startswith(".") or len(name) > 128:
        raise UsageError(
            f"bad {kind} name {name!r}: use letters, digits, '-', '_' and '.' (not leading)"
        )
    return name


def add_target(catalog: Catalog, name: str, url: str) -> Target:
    check_name("target", name)
    validate_url(url)
    return catalog.add_target(name, url)


@dataclass(frozen=True)
class Registration:
    cluster: Cluster
    archive_command: str
    restore_command: str
    adopted_fingerprint: bool


PASSWORD_HINT = (
    "put the password in ~/.pgpass of the OS user that runs pgharbor (mode 0600), or in "
    "the file PGPASSFILE or passfile=… names, or use a service file (service=…)"
)


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


def refuse_dsn_password(dsn: str) -> None:
    """A DSN is stored in the catalog and shown by cluster list/show: it may name a
    password file (passfile=) or a service, never hold a password."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        settings = conninfo_to_dict(dsn)
    except ProgrammingError as exc:  # libpq's reason may quote a piece of the string
        reason = str(exc).strip().splitlines()[0] if redact_conninfo(dsn) == dsn else ""
        raise UsageError(
            "the DSN is not a valid libpq connection string (key=value settings or a "
            f"postgresql:// URL){': ' + reason if reason else ''}"
        ) from None
    secret = sorted(k for k, v in settings.items() if "password" in k and v)
    if secret:
        raise UsageError(
            f"the DSN holds a password ({', '.join(secret)}): it would be stored in the "
            "catalog and shown in listings",
            hint=PASSWORD_HINT,
        )


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
    refuse_dsn_password(dsn)
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


def descriptor(cluster: Cluster) -> bytes:
    return json.dumps(
        {
            "format": "pgharbor-cluster/1",
            "cluster_id": cluster.id,
            "name": cluster.name,
            "system_identifier": cluster.system_identifier,
            "wal_segment_size": cluster.wal_segment_size,
            "version": cluster.version,
        },
        indent=1,
        sort_keys=True,
    ).encode()


def add_placement(
    catalog: Catalog, settings: Settings, cluster_name: str, target_name: str, priority: int
) -> Placement:
    """Add a placement after claiming the cluster's folder on the target: the folder's
    descriptor names the cluster, so two clusters can never share one folder."""
    if priority < 0:
        raise UsageError("priority must be 0 or more (lower is tried first)")
    cluster = catalog.cluster(cluster_name)
    target = catalog.target(target_name)
    storage = open_storage(target.url, settings.target_options(target.name))
    key = descriptor_key(cluster.name)
    try:
        try:
            current = json.loads(storage.get(key))
        except StorageError as exc:
            if exc.code != 11:  # ObjectNotFound
                raise
            current = None
        except ValueError:
            raise Conflict(f"{target.url}/{key} exists and is not a pgharbor descriptor") from None
        if current and current.get("system_identifier") != cluster.system_identifier:
            raise Conflict(
                f"folder {cluster.name}/ on target {target.name} belongs to another cluster "
                f"(system identifier {current.get('system_identifier')})"
            )
        if not current:
            storage.put(key, descriptor(cluster), overwrite=False)
    finally:
        storage.close()
    return catalog.add_placement(cluster_name, target_name, priority)
