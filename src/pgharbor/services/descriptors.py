"""A cluster's descriptor on a target (``<cluster>/cluster.json``): the claim of its
folder (cluster id, system identifier, the target it was claimed through, see
storage.claim) and the cluster's non-secret attributes, so that a lost catalog can be
rebuilt from the targets alone (services.rebuild).

Written at ``placement add``; rewritten on every placement of the cluster when
``cluster set`` changes an attribute. The DSN is never written here (it may hold a
password): after a rebuild the operator gives it again (``cluster set NAME --dsn``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from pgharbor.errors import PgharborError
from pgharbor.model import Cluster
from pgharbor.services.context import Services
from pgharbor.storage.claim import CLUSTER_FORMAT, check_claim
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import descriptor_key

log = logging.getLogger(__name__)

# What identifies the cluster: the same on every target, or the descriptors conflict.
IDENTITY = ("cluster_id", "name", "system_identifier", "wal_segment_size")
# The cluster's attributes, with the defaults a descriptor written before they were
# kept there is read back with.
ATTRIBUTES: dict[str, Any] = {
    "version": "",
    "version_num": 0,
    "software": "postgresql",
    "idc": "",
    "platform": "",
    "host": "",
    "port": 0,
    "required_copies": 1,
    "archive_async": False,
    "active": True,
}


def descriptor(cluster: Cluster, target_id: str) -> bytes:
    """The cluster's claim of its folder on one target (see storage.claim), with its
    attributes (never the DSN) and when it was written."""
    doc: dict[str, Any] = {
        "format": CLUSTER_FORMAT,
        "cluster_id": cluster.id,
        "name": cluster.name,
        "system_identifier": cluster.system_identifier,
        "wal_segment_size": cluster.wal_segment_size,
        "target_id": target_id,
        "written_at": datetime.now(UTC).isoformat(),
    }
    doc.update({k: getattr(cluster, k) for k in ATTRIBUTES})
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def _version_num(version: str) -> int:
    """``15.18`` -> 150018 (a descriptor written before version_num was kept)."""
    major, _, minor = version.partition(".")
    try:
        return int(major) * 10000 + int(minor.partition(".")[0] or 0)
    except ValueError:
        return 0


def _typed(value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, int):
        return value if type(value) is int else default
    return value if isinstance(value, str) else default


def attributes(doc: dict[str, Any]) -> dict[str, Any]:
    """The cluster's attributes in a descriptor, defaults for those it lacks (or holds
    with the wrong type)."""
    values = {k: _typed(doc.get(k), default) for k, default in ATTRIBUTES.items()}
    if not values["version_num"] and values["version"]:
        values["version_num"] = _version_num(values["version"])
    values["required_copies"] = max(1, values["required_copies"])
    return values


def refresh(svc: Services, cluster: Cluster) -> list[str]:
    """Rewrite the cluster's descriptor on each of its placements after a change, where
    the folder's claim is found and matches (never over another cluster's or target's
    claim). Returns what could not be updated (also logged as warnings): the change
    itself stands, and a rebuild would read the older attributes there."""
    problems = []
    for p in svc.catalog.placements(cluster.name):
        try:
            storage = open_storage(p.url, svc.settings.target_options(p.target))
            try:
                check_claim(storage, cluster.name, cluster.system_identifier, p.target_id)
                storage.put(descriptor_key(cluster.name), descriptor(cluster, p.target_id))
            finally:
                storage.close()
        except PgharborError as exc:
            problems.append(f"descriptor of {cluster.name} on target {p.target} not updated: {exc}")
            log.warning("warning: %s", problems[-1])
    return problems
