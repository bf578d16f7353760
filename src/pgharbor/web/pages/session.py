"""Signing in and out. The sign-in form has its own CSRF token (there is no session yet):
a random value in a short-lived ``HttpOnly``, ``SameSite=Strict`` cookie that the form
must echo (double submit). Signing out is a form with the session's token. Failed
sign-ins are rate-limited by the web core (auth.sign_in), which logs them as events."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pgharbor.errors import PgharborError
from pgharbor.web import auth
from pgharbor.web.pages.guard import check_form, error_page, safe_next, viewer
from pgharbor.web.pages.render import page

router = APIRouter(include_in_schema=False)
LOGIN_CSRF = "pgharbor_login_csrf"


def _form_page(request: Request, nxt: str, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    resp = page(
        request,
        "login.html",
        status,
        who=None,
        next=nxt,
        login_csrf=token,
        error=error,
        title="Sign in",
    )
    resp.set_cookie(
        LOGIN_CSRF,
        token,
        max_age=900,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.app.state.ctx.tls,
    )
    return resp


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    return _form_page(request, safe_next(next), None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    data = await request.form()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    nxt = safe_next(form.get("next"))
    sent, kept = form.get("csrf_token", ""), request.cookies.get(LOGIN_CSRF, "")
    if not sent or not kept or not hmac.compare_digest(sent, kept):
        return _form_page(request, nxt, "the sign-in form expired: try again", 403)
    ctx = request.app.state.ctx
    try:
        session = await run_in_threadpool(
            auth.sign_in,
            ctx,
            form.get("name", ""),
            form.get("password", ""),
            auth.client_of(request),
        )
    except PgharborError as exc:
        from pgharbor.web.errors import status_of

        return _form_page(request, nxt, exc.message, status_of(exc))
    resp = RedirectResponse(nxt, status_code=303)
    auth.set_session_cookie(resp, session, ctx)
    resp.delete_cookie(LOGIN_CSRF, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    data = await request.form()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    who = await run_in_threadpool(viewer, request)
    ctx = request.app.state.ctx
    if who is not None:
        try:
            check_form(request, form, who, "read")
        except PgharborError as exc:
            return error_page(request, who, exc)
        await run_in_threadpool(auth.sign_out, ctx, request)
    resp = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookie(resp, ctx)
    return resp
