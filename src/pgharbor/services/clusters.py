"""Clusters of the fleet: registering a running primary, listing, showing, changing."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgharbor.archive.commands import archive_command, command_lines, conf_line
from pgharbor.catalog.repo import now
from pgharbor.catalog.urls import redact_conninfo
from pgharbor.errors import Conflict, UsageError
from pgharbor.model import Cluster, Placement
from pgharbor.pg import identity
from pgharbor.pg.conninfo import refuse_password
from pgharbor.services import descriptors
from pgharbor.services import placements as placement_service
from pgharbor.services.context import Services
from pgharbor.services.rules import check_name, check_required_copies


@dataclass(frozen=True)
class Registration:
    cluster: Cluster
    archive_command: str
    restore_command: str
    adopted_fingerprint: bool
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterView:
    cluster: Cluster
    placements: list[Placement]


@dataclass(frozen=True)
class ClusterChange:
    cluster: Cluster
    archive_command: str | None = None  # to set in postgresql.conf when it changed


def shown(c: Cluster) -> Cluster:
    """What any result shows of a cluster: a DSN stored before passwords were refused
    is redacted."""
    return c.replace(dsn=redact_conninfo(c.dsn))


def register(
    svc: Services,
    name: str,
    dsn: str,
    *,
    idc: str = "",
    platform: str = "",
    required_copies: int = 1,
    archive_async: bool = False,
) -> Registration:
    """Register the running primary at ``dsn``: its identity read from the server, a
    fingerprint (the cluster's id) written into it, the commands for postgresql.conf."""
    check_name("cluster", name)
    if required_copies < 1:
        raise UsageError("required copies must be at least 1")
    refuse_password(dsn, "the DSN", "it would be stored in the catalog and shown in listings")
    catalog = svc.catalog
    with identity.connect(dsn) as conn:
        ident = identity.read_identity(conn)
        if ident.in_recovery:
            raise UsageError("the server is a standby (in recovery): register its primary")
        fp = identity.read_fingerprint(conn)
        cluster_id: str | None = None
        if fp is not None:
            known = {c.id: c.name for c in catalog.clusters()}
            if fp[0] in known:
                raise Conflict(
                    f"this database is already registered as cluster {known[fp[0]]!r} "
                    f"(fingerprint {fp[0]})"
                )
            cluster_id = fp[0]  # a catalog rebuilt: keep the cluster's id
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
    archive, restore = command_lines(svc.settings, cluster)
    notes = []
    if required_copies > 1:
        notes.append(
            f"add {required_copies} placements before turning archive_mode on: until then "
            f"no WAL file can have the {required_copies} copies it needs"
        )
    return Registration(shown(cluster), archive, restore, cluster_id is not None, notes)


def list_clusters(svc: Services) -> list[Cluster]:
    return [shown(c) for c in svc.catalog.clusters()]


def show(svc: Services, name: str) -> ClusterView:
    c = svc.catalog.cluster(name)
    return ClusterView(shown(c), placement_service.list_placements(svc, name))


def set_options(
    svc: Services,
    name: str,
    *,
    required_copies: int | None = None,
    active: bool | None = None,
    archive_async: bool | None = None,
) -> ClusterChange:
    """Change a cluster's settings; switching between sync and async archiving gives the
    archive_command to set in postgresql.conf (a reload applies it)."""
    catalog = svc.catalog
    values: dict[str, object] = {}
    if required_copies is not None:
        active_now = sum(p.active for p in catalog.placements(name))
        values["required_copies"] = check_required_copies(name, required_copies, active_now)
    if active is not None:
        values["active"] = active
    if archive_async is not None:
        values["archive_async"] = archive_async
    if not values:
        raise UsageError(
            "nothing to change: give --required-copies, --active/--inactive or --async/--sync"
        )
    c = catalog.update_cluster(name, **values)
    descriptors.refresh(svc, c)  # a rebuilt catalog reads them back
    command = None
    if archive_async is not None:
        command = conf_line("archive_command", archive_command(svc.settings, c))
    return ClusterChange(shown(c), command)


def set_dsn(svc: Services, name: str, dsn: str) -> Cluster:
    """Point the catalog at a new address of the same cluster (a failover, a move): the
    server at ``dsn`` must be a primary with the cluster's system identifier, and its
    fingerprint, when it has one, must name this cluster."""
    refuse_password(dsn, "the DSN", "it would be stored in the catalog and shown in listings")
    catalog = svc.catalog
    c = catalog.cluster(name)
    with identity.connect(dsn) as conn:
        ident = identity.require_primary(
            conn,
            c.system_identifier,
            c.name,
            "the server at the DSN is a standby: point the cluster at its primary",
        )
        fp = identity.read_fingerprint(conn)
        if fp is not None and fp[0] != c.id:
            raise Conflict(
                f"the database at the DSN carries the fingerprint of cluster id {fp[0]}, not "
                f"{c.id} of cluster {c.name!r}"
            )
        if fp is None:
            identity.write_fingerprint(conn, c.id, now())
    changed = catalog.update_cluster(
        name,
        dsn=dsn,
        host=ident.host,
        port=ident.port,
        version=ident.version,
        version_num=ident.version_num,
    )
    descriptors.refresh(svc, changed)
    return shown(changed)


@dataclass
class Removal:
    cluster: str
    purged: dict[str, int] = field(default_factory=dict)  # target -> objects deleted
    backups_deleted: int = 0


def remove(svc: Services, name: str, *, purge: bool = False, yes: bool = False) -> Removal:
    """Forget a cluster: refused while it has active placements (take them out first:
    ``placement set --inactive`` or ``placement remove``). With ``purge`` (and ``yes``,
    the confirmation) its files are deleted too from the targets of its placements: its
    backups through the safe garbage collection, then its WAL and its folder's claim."""
    from pgharbor.backup.delete import delete_backup
    from pgharbor.catalog.backups import BackupRepo
    from pgharbor.storage.factory import open_storage
    from pgharbor.storage.layout import descriptor_key

    catalog = svc.catalog
    c = catalog.cluster(name)
    places = catalog.placements(name)
    active = [p.target for p in places if p.active]
    if active:
        raise Conflict(
            f"cluster {name!r} still ships to {', '.join(active)}",
            hint=f"pgharbor placement set {name} TARGET --inactive (or placement remove) first",
        )
    if purge and not yes:
        raise UsageError(
            f"--purge deletes every backup and WAL file of {name!r} from "
            f"{', '.join(p.target for p in places) or 'its targets'}: add --yes to confirm"
        )
    result = Removal(name)
    if purge:
        for b in BackupRepo(catalog).for_cluster(name):
            delete_backup(catalog, svc.settings, name, b.id)  # leases, the safe GC
            result.backups_deleted += 1
        for p in places:
            storage = open_storage(p.url, svc.settings.target_options(p.target))
            claim = descriptor_key(c.name)
            objects = [o.key for o in storage.list(f"{c.name}/") if o.key != claim]
            for key in objects:
                storage.delete(key)
            storage.delete(claim)  # last: the folder is no longer the cluster's
            result.purged[p.target] = len(objects) + 1
    catalog.forget_cluster(name)
    return result
