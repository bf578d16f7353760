"""The web app of ``pgharbor serve``: /health (anonymous), /metrics (anonymous while
``metrics_anonymous``, else any token), the JSON API under /api/v1 (OpenAPI document at
/api/v1/openapi.json), and the dashboard's pages and static files when present."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from pgharbor import __version__
from pgharbor.web import errors
from pgharbor.web.auth import principal
from pgharbor.web.context import WebContext

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).parent / "static"


def create_app(ctx: WebContext) -> FastAPI:
    from pgharbor.web.api import router as api_router

    app = FastAPI(
        title="pgharbor",
        version=__version__,
        description="The JSON API of pgharbor serve: the fleet's catalog, and its actions.",
        openapi_url=None,  # served below, behind the same authentication as the API
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    errors.install(app)
    app.add_api_route("/health", _health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        f"{API_PREFIX}/openapi.json",
        _openapi,
        methods=["GET"],
        include_in_schema=False,
        dependencies=[Depends(principal)],
    )
    app.include_router(api_router, prefix=API_PREFIX)
    _install_openapi(app)
    pages = _pages_router()
    if pages is not None:
        app.include_router(pages)
    if STATIC_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _pages_router() -> Any:
    try:
        module = importlib.import_module("pgharbor.web.pages")
    except ModuleNotFoundError as exc:
        if exc.name not in ("pgharbor.web.pages",):
            raise
        return None
    return getattr(module, "router", None)


def _openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


def _install_openapi(app: FastAPI) -> None:
    from pgharbor.web.openapi import document

    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = document(app, API_PREFIX)
        doc: dict[str, Any] = cache["doc"]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _health(request: Request) -> JSONResponse:
    ctx: WebContext = request.app.state.ctx
    if ctx.node is None:
        return JSONResponse({"status": "ok", "node": None}, 200)
    ok, body = ctx.node.health()
    return JSONResponse(body, 200 if ok else 503)


def _metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    ctx: WebContext = request.app.state.ctx
    if not ctx.settings.metrics_anonymous:
        principal(request)  # any scope reads the metrics
    if ctx.registry is None:
        return JSONResponse(errors.body("no metrics on this server", None, 6), 404)
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)
