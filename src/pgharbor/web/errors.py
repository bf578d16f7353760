"""pgharbor's errors as JSON answers: ``{"error": message, "hint": ..., "code": exit
code}`` with the CLI's message and exit code, and an HTTP status for the kind of error."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgharbor import errors as e

log = logging.getLogger(__name__)

# the first class an error is an instance of gives its status
STATUS: list[tuple[type[e.PgharborError], int]] = [
    (e.Unauthenticated, 401),
    (e.Forbidden, 403),
    (e.RateLimited, 429),
    (e.NotFound, 404),
    (e.UsageError, 400),
    (e.ConfigError, 400),
    (e.CatalogUnavailable, 503),
    (e.CatalogRejected, 400),
    (e.CatalogError, 500),
    (e.Busy, 409),
    (e.GuardRefused, 409),
    (e.Conflict, 409),
    (e.StorageUnavailable, 503),
    (e.PostgresError, 502),
]


def status_of(exc: e.PgharborError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def body(message: str, hint: str | None, code: int) -> dict[str, object]:
    return {"error": message, "hint": hint, "code": code}


def error_response(exc: e.PgharborError) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body(str(exc), exc.hint, exc.code), status, headers=headers)


def install(app: FastAPI) -> None:
    async def on_pgharbor(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, e.PgharborError)
        return error_response(exc)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            body(str(exc.detail), None, e.UsageError.code), exc.status_code, headers=exc.headers
        )

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(body("bad request: " + "; ".join(parts), None, e.UsageError.code), 400)

    async def on_other(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", e.error_line(exc))
        return JSONResponse(body(e.error_line(exc), None, e.INTERNAL_ERROR), 500)

    app.add_exception_handler(e.PgharborError, on_pgharbor)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_other)
