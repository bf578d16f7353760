"""Who is asking, and may they: every route but /health (and /metrics while
``metrics_anonymous``) depends on ``principal`` (a ``Authorization: Bearer`` API token or
a browser session cookie; else 401) or on ``require(scope)`` (403 when the scope is too
low). Browser sessions live in the catalog (services/users.py); the cookie carries only
the session's id, signed with the node's key (HttpOnly, SameSite=Strict, Secure over
TLS). A state-changing request authenticated by the cookie must carry the session's CSRF
token (form field ``csrf_token`` or header ``X-CSRF-Token``); a Bearer request needs none
(a browser never sends one on its own)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pgharbor.errors import ConfigError, Forbidden, Unauthenticated
from pgharbor.services import access_tokens, users
from pgharbor.services.users import Session
from pgharbor.web.context import WebContext

SESSION_COOKIE = "pgharbor_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RANK = {"read": 0, "operate": 1, "admin": 2}
_SALT = "pgharbor-session"


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str  # "token" | "user"
    scope: str  # "read" | "operate" | "admin"

    def can(self, scope: str) -> bool:
        return _RANK[self.scope] >= _RANK[scope]


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def _serializer(ctx: WebContext) -> URLSafeTimedSerializer:
    if len(ctx.secret) < 32:  # a WebContext built without WebContext.build
        raise ConfigError("the web app has no key to sign sessions with (web_secret_file)")
    return URLSafeTimedSerializer(ctx.secret, salt=_SALT)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session_id(request: Request) -> str | None:
    """The session id of the request's cookie, if its signature holds and it is no older
    than ``session_ttl`` (the catalog row decides whether it is still open)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    ctx = context(request)
    try:
        sid = _serializer(ctx).loads(raw, max_age=max(int(ctx.session_ttl), 1))
    except BadSignature:
        return None
    return sid if isinstance(sid, str) else None


def principal(request: Request) -> Principal:
    """The caller: a Bearer token, else the session cookie, else 401."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    ctx = context(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header is not 'Bearer <token>'")
        t = access_tokens.authenticate(ctx.services, token.strip())
        who = Principal(t.name, "token", t.scope)
        request.state.via = "token"
    else:
        sid = _session_id(request)
        if sid is None:
            raise Unauthenticated(
                "sign in, or send an API token",
                hint="Authorization: Bearer <token> (pgharbor token create)",
            )
        s = users.session(ctx.services, sid)
        who = Principal(s.user, "user", s.role)
        request.state.via = "session"
        request.state.session_id = sid
    request.state.principal = who
    return who


Caller = Annotated[Principal, Depends(principal)]  # a route's parameter: who is asking


def _expected_csrf(ctx: WebContext, sid: str) -> str:
    return hmac.new(ctx.secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session (for a template's forms)."""
    sid = getattr(request.state, "session_id", None) or _session_id(request)
    if sid is None:
        raise Unauthenticated("no session", hint="sign in again")
    return _expected_csrf(context(request), sid)


async def _check_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS or getattr(request.state, "via", None) != "session":
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, csrf_token(request)):
        raise Forbidden("the CSRF token is missing or wrong", hint="reload the page and try again")


async def csrf_protect(request: Request, who: Caller) -> Principal:
    """For a state-changing route reached with the session cookie: its CSRF token."""
    await _check_csrf(request)
    return who


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, with at least ``scope`` (403 otherwise); a cookie-
    authenticated state-changing request must also carry its CSRF token."""
    if scope not in _RANK:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(request: Request, who: Caller) -> Principal:
        if not who.can(scope):
            raise Forbidden(
                f"{who.kind} {who.name!r} has scope {who.scope}; this needs {scope}",
                hint="ask an admin for a token or role with that scope",
            )
        await _check_csrf(request)
        return who

    dependency.__name__ = f"require_{scope}"
    return dependency


def sign_in(ctx: WebContext, name: str, password: str, client: str) -> Session:
    return users.sign_in(ctx.services, name, password, client, ctx.session_ttl)


def set_session_cookie(response: Response, session: Session, ctx: WebContext) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(ctx).dumps(session.id),
        max_age=int(ctx.session_ttl),
        httponly=True,
        samesite="strict",
        secure=ctx.tls,
        path="/",
    )


def clear_session_cookie(response: Response, ctx: WebContext) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=ctx.tls
    )


def sign_out(ctx: WebContext, request: Request) -> bool:
    """End the request's session (True: one was open)."""
    sid = _session_id(request)
    return users.sign_out(ctx.services, sid) if sid else False
