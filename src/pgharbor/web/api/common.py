"""What the API's routers share: the services of the request, and JSON answers built with
the CLI's own ``to_jsonable`` (so API and ``--json`` agree)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from pgharbor.render.output import to_jsonable
from pgharbor.services.context import Services


def svc(request: Request) -> Services:
    services: Services = request.app.state.ctx.services
    return services


def answer(obj: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(to_jsonable(obj), status)
