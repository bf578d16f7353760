"""Templates (Jinja2, autoescaped) and their filters: times as ``<time>`` elements in UTC
(a small script shows them in the viewer's time zone, the UTC stays in the title),
sizes, durations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from pgharbor import __version__
from pgharbor.monitor.result import dur
from pgharbor.render.output import fmt_bytes

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def utc(dt: datetime | None) -> str:
    if dt is None:
        return ""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def time_tag(dt: datetime | None, empty: str = "—") -> Markup:
    """``<time datetime=ISO title=UTC>UTC</time>``: readable without JavaScript."""
    if dt is None:
        return Markup(escape(empty))
    iso = dt.astimezone(UTC).isoformat()
    text = utc(dt)
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(iso, text)


def age(dt: datetime | None, now: datetime | None = None) -> str:
    if dt is None:
        return ""
    return dur(max(((now or datetime.now(UTC)) - dt).total_seconds(), 0.0))


def seconds(s: float | None) -> str:
    return "" if s is None else dur(s)


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=time_tag, age=age, bytes=fmt_bytes, dur=seconds, utc=utc)
    env.globals["version"] = __version__
    return env


ENV = _env()


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """A page for the signed-in viewer: ``who`` and the session's CSRF token (for every
    form) are given to every template."""
    from pgharbor.web.pages.guard import csrf_for, viewer

    who = values.pop("who") if "who" in values else viewer(request)
    html = ENV.get_template(template).render(
        request=request, who=who, csrf=csrf_for(request, who), now=datetime.now(UTC), **values
    )
    resp = HTMLResponse(html, status_code=status_code)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    )
    return resp
