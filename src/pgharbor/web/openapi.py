"""The API's OpenAPI document as pgharbor answers: the security schemes (a Bearer token, or
the dashboard's session cookie), the scope each operation needs (``x-pgharbor-scope``,
from its tag), and the error answers as they are (400 for a bad request, not FastAPI's
422; 401; 403 where a scope or CSRF applies), each ``{"error", "hint", "code"}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

SCOPE_OF_TAG = {"read": "read", "actions": "operate", "admin": "admin"}
ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["error", "hint", "code"],
    "properties": {
        "error": {"type": "string", "description": "the message (as the CLI prints it)"},
        "hint": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "code": {"type": "integer", "description": "the CLI's exit code for this error"},
    },
}
_ERRORS = {
    "400": "Bad request (a usage error, exit code 2)",
    "401": "No valid credentials (exit code 23)",
    "403": "The scope is too low, or a session's CSRF token is missing (exit code 24)",
    "404": "Not found (exit code 6)",
}


def _error(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def document(app: FastAPI, prefix: str) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    doc["paths"] = {p: v for p, v in doc["paths"].items() if p.startswith(prefix)}
    comps = doc.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA
    comps["securitySchemes"] = {
        "token": {"type": "http", "scheme": "bearer", "description": "pgharbor token create"},
        "session": {"type": "apiKey", "in": "cookie", "name": "pgharbor_session"},
    }
    doc["security"] = [{"token": []}, {"session": []}]
    for item in doc["paths"].values():
        for op in item.values():
            scope = SCOPE_OF_TAG.get((op.get("tags") or ["read"])[0], "read")
            op["x-pgharbor-scope"] = scope
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            codes = ["400", "401", "404"] + (["403"] if scope != "read" else [])
            for code in sorted(codes):
                responses.setdefault(code, _error(_ERRORS[code]))
    return doc
