"""Who a folder on a target belongs to, checked before anything counts as stored there.

``pgharbor-target.json`` at a target's root names the target (its catalog id), written
when the target is added; ``<cluster>/cluster.json`` claims a cluster's folder for one
system identifier on one target, written when the placement is added (see layout).
A copy counts only where the claim is there and matches: a bare mount point (a file
system that failed to mount), another bucket or prefix, an emptied root, or the same
storage reached through two target names all fail the check, so *required copies*
always means copies on the distinct storage the placements were set up on.
"""

from __future__ import annotations

import json

from pgharbor.errors import ObjectNotFound, WrongTarget
from pgharbor.storage.layout import descriptor_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pgharbor.storage.base import Storage

CLUSTER_FORMAT = "pgharbor-cluster/1"
TARGET_FORMAT = "pgharbor-target/1"


def read_json(storage: Storage, key: str) -> dict[str, Any] | None:
    """A small JSON document, None when missing; WrongTarget when it is not one."""
    try:
        blob = storage.get(key)
    except ObjectNotFound:
        return None
    try:
        doc = json.loads(blob) if len(blob) < 65536 else None
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise WrongTarget(f"{storage.url}: {key} exists and is not a pgharbor descriptor")
    return doc


def check_claim(storage: Storage, cluster: str, system_identifier: object, target_id: str) -> None:
    """Raise WrongTarget unless ``cluster``'s folder on this storage is claimed for
    ``system_identifier`` (through the target ``target_id``, when the claim names one)."""
    key = descriptor_key(cluster)
    doc = read_json(storage, key)
    if doc is None:
        storage.stat(key)  # the backend says so when the root or bucket itself is missing
        raise WrongTarget(
            f"{storage.url}: {key} is missing, so this is not the storage the placement was "
            "set up on (a file system that is not mounted, another bucket or prefix, an "
            "emptied root?): no copy counts here"
        )
    if str(doc.get("system_identifier")) != str(system_identifier):
        raise WrongTarget(
            f"{storage.url}: {key} claims the folder for system identifier "
            f"{doc.get('system_identifier')}, not {system_identifier}"
        )
    claimed = doc.get("target_id")
    if claimed is not None and claimed != target_id:
        raise WrongTarget(
            f"{storage.url}: {key} was claimed through another target (id {claimed}): this "
            "is the same storage as that target, so it cannot hold a separate copy"
        )
