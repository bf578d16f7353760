"""The audit trail: every action of a person or a token (the API, the dashboard, the CLI's
token and user commands) is an event with ``source`` "audit" and its ``actor``."""

from __future__ import annotations

import getpass
from typing import Protocol

from pgharbor.catalog.events import EventRepo
from pgharbor.services.context import Services


class Who(Protocol):
    """A caller that names itself (web.auth.Principal)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


Actor = str | Who


def actor_name(actor: Actor) -> str:
    """``user alice``, ``token ci-bot``, or the string given (``cli root``)."""
    if isinstance(actor, str):
        return actor
    return f"{actor.kind} {actor.name}"


def cli_actor() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return f"cli {who}"


def audit(
    svc: Services,
    actor: Actor,
    kind: str,
    message: str,
    *,
    cluster_id: str | None = None,
    state: str = "ok",
) -> None:
    EventRepo(svc.catalog).add(cluster_id, "audit", kind, state, message, actor=actor_name(actor))
