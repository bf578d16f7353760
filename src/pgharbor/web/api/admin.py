"""The API's admin routes: API tokens (list, create, revoke), dashboard users (list,
remove: a password is set only on the CLI, from a prompt or stdin) and a cluster's options
(active, required copies). Registering clusters and targets stays on the CLI (it talks to
the database hosts and the storage, which a request must not wait for)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pgharbor.services import access_tokens, clusters, users
from pgharbor.services.audit import audit
from pgharbor.web.api.common import answer, svc
from pgharbor.web.auth import Principal, require

router = APIRouter(tags=["admin"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.get("/tokens", summary="API tokens (never their secrets)")
def token_list(request: Request, _who: Admin) -> JSONResponse:
    return answer(access_tokens.list_tokens(svc(request)))


class TokenBody(BaseModel):
    name: str
    scope: str = Field(description="read, operate or admin")
    expires: str | None = Field(None, description="12h, 90d, 8w, or never (the default)")


@router.post("/tokens", status_code=201, summary="Create a token: the answer shows it, this once")
def token_create(request: Request, body: TokenBody, who: Admin) -> JSONResponse:
    made = access_tokens.create_token(
        svc(request), who, body.name, body.scope, expires=body.expires
    )
    return answer(made, 201)


@router.delete("/tokens/{name}", summary="Revoke a token (refused from then on)")
def token_revoke(request: Request, name: str, who: Admin) -> JSONResponse:
    return answer(access_tokens.revoke_token(svc(request), who, name))


@router.get("/users", summary="Dashboard users and their roles (never a password hash)")
def user_list(request: Request, _who: Admin) -> JSONResponse:
    return answer(users.list_users(svc(request)))


@router.delete("/users/{name}", summary="Remove a dashboard user (its sessions end)")
def user_remove(request: Request, name: str, who: Admin) -> JSONResponse:
    return answer(users.remove_user(svc(request), who, name))


class ClusterOptions(BaseModel):
    active: bool | None = Field(None, description="false: out of service (not watched)")
    required_copies: int | None = Field(None, ge=1, description="copies each WAL file needs")


@router.post("/clusters/{cluster}/options", summary="Change a cluster's options")
def cluster_options(
    request: Request, cluster: str, body: ClusterOptions, who: Admin
) -> JSONResponse:
    s = svc(request)
    change = clusters.set_options(
        s, cluster, required_copies=body.required_copies, active=body.active
    )
    said = ", ".join(f"{k} {v}" for k, v in body.model_dump(exclude_none=True).items())
    audit(s, who, "cluster_options", f"{cluster}: {said}", cluster_id=change.cluster.id)
    return answer(change)
