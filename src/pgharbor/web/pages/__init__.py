"""The dashboard: server-rendered pages (Jinja2, templates/) over the same services the
CLI and the API call, with htmx (vendored in static/) only for small enhancements — every
page reads without JavaScript. ``router`` (built on first use, so that the page data
modules import without the web stack) is what pgharbor.web.app.create_app includes."""

from __future__ import annotations

from typing import Any

__all__ = ["router"]
_router: Any = None


def __getattr__(name: str) -> Any:
    global _router
    if name != "router":
        raise AttributeError(name)
    if _router is None:
        from fastapi import APIRouter

        from pgharbor.web.pages import forms, session, views

        r = APIRouter(include_in_schema=False)
        r.include_router(session.router)
        r.include_router(views.router)
        r.include_router(forms.router)
        _router = r
    return _router
