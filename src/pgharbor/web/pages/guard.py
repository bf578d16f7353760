"""Who is looking, for the pages: the web core's authentication (pgharbor.web.auth) with
a browser's answers. A page without a valid session (none, expired, signed out)
redirects to the sign-in form, where the API answers 401 JSON; a scope too low is a 403
page; a state-changing form must carry the session's CSRF token (403 page otherwise);
pgharbor's errors are pages with the CLI's message and hint and the API's status."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pgharbor.errors import Forbidden, PgharborError, Unauthenticated
from pgharbor.web import auth
from pgharbor.web.auth import Principal

Form = Mapping[str, str]


def viewer(request: Request) -> Principal | None:
    """The signed-in principal (session cookie, or a Bearer token), None when there is
    none or it no longer holds (expired, revoked, signed out)."""
    try:
        return auth.principal(request)
    except Unauthenticated:
        return None


def csrf_for(request: Request, who: Principal | None) -> str:
    """The session's CSRF token for the forms ("" for a Bearer caller: no cookie, no
    CSRF)."""
    if who is None or getattr(request.state, "via", None) != "session":
        return ""
    return auth.csrf_token(request)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def safe_next(text: str | None) -> str:
    """Only a path of this site (never another host) to go back to after signing in."""
    if not text or not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    return text


def error_page(request: Request, who: Principal | None, exc: PgharborError) -> Response:
    from pgharbor.web.errors import status_of
    from pgharbor.web.pages.render import page

    status = status_of(exc)
    title = {401: "Not signed in", 403: "Refused", 404: "Not found", 409: "Conflict"}.get(
        status, "Error"
    )
    return page(
        request, "error.html", status, who=who, message=exc.message, hint=exc.hint, title=title
    )


def check_form(request: Request, form: Form, who: Principal, scope: str) -> None:
    """A state-changing form: the scope it needs, and (a session) its CSRF token."""
    if not who.can(scope):
        raise Forbidden(
            f"{who.kind} {who.name!r} has scope {who.scope}; this needs {scope}",
            hint="ask an admin for a role with that scope",
        )
    if getattr(request.state, "via", None) == "session":
        expected = auth.csrf_token(request)
        if not hmac.compare_digest(form.get(auth.CSRF_FIELD, ""), expected):
            raise Forbidden(
                "the form's CSRF token is missing or wrong", hint="reload the page and try again"
            )


def run_page(
    request: Request, build: Callable[[Principal], Response], scope: str = "read"
) -> Response:
    """A page: signed in (else the sign-in form), the scope, pgharbor's errors as pages."""
    who = viewer(request)
    if who is None:
        return to_login(request)
    try:
        if not who.can(scope):
            raise Forbidden(f"{who.kind} {who.name!r} has scope {who.scope}; this needs {scope}")
        return build(who)
    except PgharborError as exc:
        return error_page(request, who, exc)


async def run_form(
    request: Request, scope: str, act: Callable[[Principal, Form], Response]
) -> Response:
    """A state-changing form (POST): signed in, the scope, the CSRF token, then ``act``
    off the event loop; refusals and pgharbor's errors are pages."""
    data = await request.form()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    who = await run_in_threadpool(viewer, request)
    if who is None:
        return to_login(request)
    try:
        check_form(request, form, who, scope)
        return await run_in_threadpool(act, who, form)
    except PgharborError as exc:
        return await run_in_threadpool(error_page, request, who, exc)
