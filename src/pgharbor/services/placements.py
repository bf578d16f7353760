"""Placements: which targets a cluster ships to, in priority order, each claimed."""

from __future__ import annotations

from pgharbor.errors import Conflict, NotFound, UsageError
from pgharbor.model import Placement
from pgharbor.services.context import Services
from pgharbor.services.descriptors import descriptor
from pgharbor.services.rules import check_priority
from pgharbor.storage.claim import read_json
from pgharbor.storage.factory import open_storage, shown_url
from pgharbor.storage.layout import TARGET_MARKER, descriptor_key


def shown(p: Placement) -> Placement:
    return p.replace(url=shown_url(p.url))


def add(svc: Services, cluster_name: str, target_name: str, priority: int) -> Placement:
    """Add a placement after claiming the cluster's folder on the target: the folder's
    descriptor names the cluster and the target, so two clusters can never share one
    folder, and a copy counts only where that claim is found (see storage.claim)."""
    from pgharbor.services.targets import marker, marker_id

    check_priority(priority)
    catalog = svc.catalog
    cluster = catalog.cluster(cluster_name)
    target = catalog.target(target_name)
    storage = open_storage(target.url, svc.settings.target_options(target.name))
    key = descriptor_key(cluster.name)
    try:
        found = marker_id(storage)
        if found is not None and found != target.id:
            raise Conflict(
                f"the storage of target {target.name!r} is marked as another target "
                f"(id {found}): the same storage under two target names?"
            )
        if found is None:  # a target added before storage was marked
            storage.put(TARGET_MARKER, marker(target.id, target.name), overwrite=False)
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
        else:  # the folder is this cluster's (taken back): its attributes brought up to date
            storage.put(key, descriptor(cluster, target.id))
    finally:
        storage.close()
    return shown(catalog.add_placement(cluster_name, target_name, priority))


def list_placements(svc: Services, cluster_name: str) -> list[Placement]:
    return [shown(p) for p in svc.catalog.placements(cluster_name)]


def _active_after(svc: Services, cluster: str, target: str, active: bool) -> int:
    return sum(p.active for p in svc.catalog.placements(cluster) if p.target != target) + int(
        active
    )


def _refuse_too_few(svc: Services, cluster: str, target: str, active_after: int) -> None:
    """An active cluster keeps at least its required copies' worth of active placements
    (an inactive one archives nothing: it may be taken apart)."""
    c = svc.catalog.cluster(cluster)
    required = c.required_copies
    if c.active and active_after < required:
        raise UsageError(
            f"cluster {cluster!r} requires {required} copies: without target {target!r} it "
            f"would have {active_after} active placement(s), and every wal push would fail",
            hint=f"lower them first (pgharbor cluster set {cluster} --required-copies N), add "
            f"another placement, or take the cluster out of service (cluster set {cluster} "
            "--inactive)",
        )


def remove(svc: Services, cluster: str, target: str) -> Placement:
    """Stop shipping ``cluster`` to ``target``: refused when fewer active placements than
    the cluster's required copies would be left. The files stored there stay (as does
    the cluster's claim of its folder: adding the placement again takes them back)."""
    placement = next((p for p in svc.catalog.placements(cluster) if p.target == target), None)
    if placement is None:
        raise NotFound(f"cluster {cluster!r} does not ship to target {target!r}")
    if placement.active:
        _refuse_too_few(svc, cluster, target, _active_after(svc, cluster, target, False))
    svc.catalog.remove_placement(cluster, target)
    return shown(placement)


def set_options(
    svc: Services,
    cluster: str,
    target: str,
    *,
    priority: int | None = None,
    active: bool | None = None,
) -> Placement:
    """Change a placement's priority, or take it out of (or back into) service; taking
    it out is refused like a removal when too few active placements would be left."""
    values: dict[str, object] = {}
    if priority is not None:
        values["priority"] = check_priority(priority)
    if active is not None:
        values["active"] = active
        if not active:
            _refuse_too_few(svc, cluster, target, _active_after(svc, cluster, target, False))
    if not values:
        raise UsageError("nothing to change: give --priority or --active/--inactive")
    return shown(svc.catalog.update_placement(cluster, target, **values))
