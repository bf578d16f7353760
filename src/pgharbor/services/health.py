"""target check: is each target reachable, writable, durable, with room, and does it
still hold the claims of the clusters placed on it?"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pgharbor.errors import PgharborError
from pgharbor.model import Target
from pgharbor.services import targets as target_service
from pgharbor.services.context import Services
from pgharbor.storage.base import HOST, Storage
from pgharbor.storage.claim import check_claim
from pgharbor.storage.factory import open_storage


@dataclass(frozen=True)
class ClaimCheck:
    cluster: str
    ok: bool
    problem: str | None = None


@dataclass
class TargetCheck:
    target: str
    url: str
    reachable: bool = False
    marker: bool = False  # pgharbor-target.json names this target
    writable: bool = False
    durable: bool = False
    total_bytes: int | None = None
    free_bytes: int | None = None
    clusters: list[ClaimCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _probe_write(storage: Storage) -> None:
    """A small object written, read back and removed (under its own folder)."""
    key = f"pgharbor-check/{HOST}-{os.getpid()}-{os.urandom(4).hex()}"
    data = os.urandom(64)
    try:
        storage.put(key, data, overwrite=False)
        if storage.get(key) != data:
            raise PgharborError("what was written did not read back the same")
    finally:
        storage.delete(key)


def check_target(svc: Services, target: Target) -> TargetCheck:
    r = TargetCheck(target.name, target_service.shown(target).url)
    try:
        storage = open_storage(target.url, svc.settings.target_options(target.name))
        found = target_service.marker_id(storage)
        r.reachable = True
        r.marker = found == target.id
        if not r.marker:
            r.problems.append(
                "pgharbor-target.json is missing: not the storage this target was added with"
                if found is None
                else f"pgharbor-target.json names another target (id {found})"
            )
        _probe_write(storage)
        r.writable = True
        r.durable = storage.durable()
        if not r.durable:
            r.problems.append("writes are not made durable (no fsync): copies here do not count")
        space = storage.space()
        if space is not None:
            r.total_bytes, r.free_bytes = space
    except PgharborError as exc:
        r.problems.append(exc.message)
        return r
    catalog = svc.catalog
    for c in catalog.clusters():
        if not any(p.target == target.name for p in catalog.placements(c.name)):
            continue
        try:
            check_claim(storage, c.name, c.system_identifier, target.id)
            r.clusters.append(ClaimCheck(c.name, True))
        except PgharborError as exc:
            r.clusters.append(ClaimCheck(c.name, False, exc.message))
            r.problems.append(f"{c.name}: {exc.message}")
    return r


def check(svc: Services, name: str | None = None) -> list[TargetCheck]:
    """One target, or every target (``name`` None)."""
    chosen = [svc.catalog.target(name)] if name else svc.catalog.targets()
    return [check_target(svc, t) for t in chosen]
