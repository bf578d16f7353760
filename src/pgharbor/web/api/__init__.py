"""The JSON API (/api/v1): every route needs credentials (``auth.principal`` on the whole
router, before anything else is looked at); reading needs any scope, actions ``operate``,
fleet changes and token management ``admin``. Results are the services' dataclasses as
the CLI's ``--json`` prints them (render.output.to_jsonable)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from pgharbor.web.api import act, admin, read
from pgharbor.web.auth import principal

router = APIRouter(dependencies=[Depends(principal)])
router.include_router(read.router)
router.include_router(act.router)
router.include_router(admin.router)

__all__ = ["router"]
