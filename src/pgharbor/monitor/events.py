"""Events: each state change worth a human's attention, written once to the catalog.

A check's state per (cluster, service) is kept in ``check_states``; every evaluation
(``pgharbor check`` with its default thresholds, and ``pgharbor serve`` every
``events_interval`` seconds) compares and writes an event only when the state changes
(a first state that is not OK is a change): archive failing, copies missing, a gap
found, a slot at risk, a timeline diverging, a target down, and each way back to OK.
The scheduler adds one event per failed job, and one when retention is refused by its
guard (a refused expire job, or the expire a scheduled backup runs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pgharbor.catalog.events import EventRepo
from pgharbor.model import Cluster
from pgharbor.monitor.result import Item, State
from pgharbor.services.context import Services

log = logging.getLogger(__name__)
NAMES = {s.value: s.name for s in State}


def note_checks(svc: Services, judged: Iterable[tuple[Cluster, str, Item]]) -> int:
    """Record the states of a check run; the number of events written. Never fails the
    check: a catalog that cannot be written (a read-only role) is logged."""
    repo = EventRepo(svc.catalog)
    written = 0
    for cluster, service, item in judged:
        try:
            written += repo.transition(cluster.id, service, int(item.state), item.text, NAMES)
        except Exception as exc:
            log.warning("cannot record the %s state of %s: %s", service, cluster.name, exc)
    return written


def states(svc: Services) -> list[tuple[str, str, int]]:
    """(cluster, service, state) of each check state recorded."""
    return [(s.cluster, s.service, s.state) for s in EventRepo(svc.catalog).states()]


def note_job(
    svc: Services, cluster_id: str, kind: str, ok: bool, result: Any, error: str | None
) -> None:
    """The events of a finished job: failed, or retention refused by its guard."""
    repo = EventRepo(svc.catalog)
    if not ok:
        refused = kind == "expire" and error is not None and "refused" in error
        state = "refused" if refused else "failed"
        repo.add(
            cluster_id, "job", "expire" if refused else kind, state, f"{kind} job failed: {error}"
        )
        return
    expire = result.get("expire") if isinstance(result, dict) else None
    if isinstance(expire, dict) and expire.get("ok") is False:
        why = str(expire.get("error"))
        state = "refused" if "refused" in why else "failed"
        repo.add(cluster_id, "job", "expire", state, f"the expire after a backup: {why}")
