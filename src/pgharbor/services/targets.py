"""Archive targets: adding one (after claiming its storage), listing, removing."""

from __future__ import annotations

import json
import os
import uuid

from pgharbor.errors import Conflict, UsageError
from pgharbor.model import Target
from pgharbor.services.context import Services
from pgharbor.services.rules import check_name
from pgharbor.storage.base import Storage
from pgharbor.storage.claim import TARGET_FORMAT, read_json
from pgharbor.storage.factory import open_storage, shown_url, validate_url
from pgharbor.storage.layout import TARGET_MARKER


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


def marker(target_id: str, name: str) -> bytes:
    """The root's ``pgharbor-target.json``: which target this storage is."""
    return json.dumps(
        {"format": TARGET_FORMAT, "id": target_id, "name": name}, indent=1, sort_keys=True
    ).encode()


def marker_id(storage: Storage) -> str | None:
    doc = read_json(storage, TARGET_MARKER)
    if doc is None:
        return None
    if doc.get("format") != TARGET_FORMAT or not isinstance(doc.get("id"), str):
        raise Conflict(f"{storage.url}/{TARGET_MARKER} exists and is not a pgharbor target marker")
    return str(doc["id"])


def shown(t: Target) -> Target:
    """What any listing shows of a target: a URL stored before credentials were refused
    is redacted, so no result ever carries a password or a secret key."""
    return t.replace(url=shown_url(t.url))


def add(svc: Services, name: str, url: str) -> Target:
    """Register a target after claiming its storage: ``pgharbor-target.json`` at its root
    names the target, so the same storage can never be added twice (under another URL
    spelling or another name) and *required copies* always counts distinct storage."""
    check_name("target", name)
    validate_url(url)
    settings, catalog = svc.settings, svc.catalog
    existing = catalog.targets()
    if any(t.name == name for t in existing):
        raise Conflict(f"target {name!r} already exists")
    ident = storage_identity(url, settings.target_options(name))
    if ident[0] == "file" and len(ident) == 2:
        raise UsageError(
            f"target root {url.removeprefix('file://')} does not exist",
            hint="create it, owned by the OS user that runs pgharbor",
        )
    for t in existing:
        if storage_identity(t.url, settings.target_options(t.name)) == ident:
            raise Conflict(f"target {name!r} would be the same storage as target {t.name!r}")
    storage = open_storage(url, settings.target_options(name))
    try:
        target_id = marker_id(storage)
        known = {t.id: t.name for t in existing}
        if target_id in known:
            raise Conflict(
                f"target {name!r} is the same storage as target {known[target_id]!r} "
                f"(its {TARGET_MARKER} names that target)"
            )
        if target_id is None:  # else: a target of an earlier catalog; keep its id
            target_id = str(uuid.uuid4())
            storage.put(TARGET_MARKER, marker(target_id, name), overwrite=False)
    finally:
        storage.close()
    return shown(catalog.add_target(name, url, target_id=target_id))


def list_targets(svc: Services) -> list[Target]:
    return [shown(t) for t in svc.catalog.targets()]


def get(svc: Services, name: str) -> Target:
    return shown(svc.catalog.target(name))


def remove(svc: Services, name: str) -> Target:
    """Remove a target from the catalog (refused while a placement uses it); its stored
    files stay."""
    target = svc.catalog.target(name)
    svc.catalog.remove_target(name)
    return shown(target)


def set_url(svc: Services, name: str, url: str) -> Target:
    """Reach a target at a new URL (a moved mount point, a renamed host, another endpoint
    to the same bucket): only the same storage is accepted — its marker must name this
    target, and the claim of every cluster placed there must be found and match."""
    from pgharbor.storage.claim import check_claim

    validate_url(url)
    catalog = svc.catalog
    target = catalog.target(name)
    storage = open_storage(url, svc.settings.target_options(name))
    try:
        found = marker_id(storage)
        if found != target.id:
            raise Conflict(
                f"{shown_url(url)} is not the storage of target {name!r}: "
                + (
                    f"its {TARGET_MARKER} names target id {found}"
                    if found
                    else f"it has no {TARGET_MARKER}"
                )
            )
        for c in catalog.clusters():
            if any(p.target == name for p in catalog.placements(c.name)):
                check_claim(storage, c.name, c.system_identifier, target.id)
    finally:
        storage.close()
    return shown(catalog.update_target(name, url=url))
