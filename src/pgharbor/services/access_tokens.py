"""API tokens: ``pgharbor token create NAME --scope read|operate|admin [--expires 90d]``
(the token is shown once; the catalog keeps its argon2id hash), ``token list``,
``token revoke NAME``, and checking one a request carries (``authenticate``).

A token reads ``phb_<id>_<secret>``: ``id`` (12 hex digits) finds the row, the whole
token is checked against the row's hash. A verified token is remembered in this process
(by its SHA-256) so that each request does not pay for argon2 again; its row is still read
every time, so a revoked or expired token is refused at once."""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from pgharbor.catalog.repo import now
from pgharbor.catalog.web_auth import TokenRow, WebAuthRepo
from pgharbor.errors import NotFound, Unauthenticated, UsageError
from pgharbor.services import hashing
from pgharbor.services.audit import Actor, actor_name, audit
from pgharbor.services.context import Services
from pgharbor.services.rules import check_name

SCOPES = ("read", "operate", "admin")
PREFIX = "phb_"
_FORMAT = re.compile(r"^phb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DURATION = re.compile(r"^(\d+)(h|d|w)$")
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often


@dataclass(frozen=True)
class TokenView:
    """A token as listed: never its secret nor its hash."""

    name: str
    scope: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    expired: bool


@dataclass(frozen=True)
class NewToken:
    """``token create``'s result: ``token`` is shown this once and stored nowhere."""

    token: str
    info: TokenView


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise UsageError(f"unknown scope {scope!r}", hint=f"one of {', '.join(SCOPES)}")
    return scope


def parse_expires(text: str | None, at: datetime | None = None) -> datetime | None:
    """``--expires``: ``12h``, ``90d``, ``8w`` from now, or ``never`` (None)."""
    if text is None or text.strip().lower() == "never":
        return None
    m = _DURATION.match(text.strip())
    if not m or int(m[1]) == 0:
        raise UsageError(
            f"bad --expires {text!r}", hint="a duration such as 12h, 90d or 8w, or never"
        )
    hours = {"h": 1, "d": 24, "w": 24 * 7}[m[2]] * int(m[1])
    return (at or now()) + timedelta(hours=hours)


def _view(r: TokenRow, at: datetime) -> TokenView:
    expired = r.expires_at is not None and r.expires_at <= at
    return TokenView(
        r.name, r.scope, r.created_by, r.created_at, r.expires_at, r.last_used_at, expired
    )


def create_token(
    svc: Services, actor: Actor, name: str, scope: str, *, expires: str | None = None
) -> NewToken:
    check_name("token", name)
    check_scope(scope)
    until = parse_expires(expires)
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    row = WebAuthRepo(svc.catalog).add_token(
        token_id, name, scope, hashing.hash_token(token), actor_name(actor), until
    )
    ends = f", expires {until.isoformat(timespec='seconds')}" if until else ", no expiry"
    audit(svc, actor, "token_create", f"token {name!r} created, scope {scope}{ends}")
    return NewToken(token, _view(row, now()))


def list_tokens(svc: Services) -> list[TokenView]:
    at = now()
    return [_view(r, at) for r in WebAuthRepo(svc.catalog).tokens()]


def revoke_token(svc: Services, actor: Actor, name: str) -> TokenView:
    repo = WebAuthRepo(svc.catalog)
    row = repo.token(name)
    repo.delete_token(name)
    audit(svc, actor, "token_revoke", f"token {name!r} revoked")
    return _view(row, now())


_verified: dict[str, str] = {}  # sha256(token) -> token id, of tokens verified here
_verified_lock = threading.Lock()


def authenticate(svc: Services, token: str) -> TokenView:
    """The token a request carries, or Unauthenticated (one message for every reason a
    token does not hold, so a caller learns nothing about which)."""
    refused = Unauthenticated(
        "the token is not valid (unknown, revoked or expired)",
        hint="pgharbor token list; a new one: pgharbor token create",
    )
    m = _FORMAT.match(token)
    if m is None:
        raise refused
    key = hashing.sha256(token)
    repo = WebAuthRepo(svc.catalog)
    try:
        row = repo.token_by_id(m[1])
    except NotFound:
        raise refused from None
    at = now()
    if row.expires_at is not None and row.expires_at <= at:
        raise refused
    with _verified_lock:
        known = _verified.get(key) == row.id
    if not known:
        if not hashing.verify_token(row.secret_hash, token):
            raise refused
        with _verified_lock:
            if len(_verified) > 10_000:
                _verified.clear()
            _verified[key] = row.id
    if row.last_used_at is None or at - row.last_used_at > TOUCH_EVERY:
        repo.touch_token(row.id, at)
    return _view(row, at)
