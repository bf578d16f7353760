"""The API's actions: scope ``operate``. A backup, verify, expire or drill is queued as a
job for the scheduler nodes (202 with the job's id: poll GET /jobs/{id}); holds and
schedule pauses change the catalog at once (200 with the new state). Each action is an
audit event naming the caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pgharbor.catalog.jobs import DEFAULT
from pgharbor.render.output import to_jsonable
from pgharbor.services import actions
from pgharbor.services.schedules import KINDS
from pgharbor.web.api.common import answer, svc
from pgharbor.web.auth import Principal, require

router = APIRouter(tags=["actions"])
Operator = Annotated[Principal, Depends(require("operate"))]


def _queue(kind: str) -> Callable[..., JSONResponse]:
    def endpoint(request: Request, cluster: str, who: Operator) -> JSONResponse:
        job = actions.trigger(svc(request), who, cluster, kind)
        return JSONResponse({"job": job.id, **to_jsonable(job)}, 202)

    endpoint.__name__ = f"queue_{kind}"
    return endpoint


for _kind in KINDS:
    router.add_api_route(
        f"/clusters/{{cluster}}/{_kind}",
        _queue(_kind),
        methods=["POST"],
        status_code=202,
        summary=f"Queue a {_kind} of the cluster now (202: the job's id)",
    )


@router.post(
    "/clusters/{cluster}/expire/preview",
    summary="Expire's dry run: what it would delete and keep, and why (changes nothing)",
)
def expire_preview(request: Request, cluster: str, _who: Operator) -> JSONResponse:
    return answer(actions.preview_expire(svc(request), cluster))


class HoldBody(BaseModel):
    reason: str = Field(min_length=1, description="why it is kept (shown in the listings)")
    until: str | None = Field(None, description="a time with a time zone; none: until released")


@router.post(
    "/clusters/{cluster}/backups/{backup_id}/hold",
    summary="Hold a backup: every expire keeps it",
)
def hold(
    request: Request,
    cluster: str,
    backup_id: str,
    body: HoldBody,
    who: Operator,
) -> JSONResponse:
    return answer(actions.hold(svc(request), who, cluster, backup_id, body.reason, body.until))


@router.post("/clusters/{cluster}/backups/{backup_id}/release", summary="Release a held backup")
def release(request: Request, cluster: str, backup_id: str, who: Operator) -> JSONResponse:
    return answer(actions.release(svc(request), who, cluster, backup_id))


def _scope(scope: str) -> str | None:
    return None if scope == DEFAULT else scope


@router.post(
    "/schedules/{scope}/{kind}/pause",
    summary="Pause a schedule (scope: a cluster, or default for the fleet's)",
)
def pause(request: Request, scope: str, kind: str, who: Operator) -> JSONResponse:
    return answer(actions.pause_schedule(svc(request), who, _scope(scope), kind))


@router.post("/schedules/{scope}/{kind}/resume", summary="Resume a paused schedule")
def resume(request: Request, scope: str, kind: str, who: Operator) -> JSONResponse:
    return answer(actions.resume_schedule(svc(request), who, _scope(scope), kind))
