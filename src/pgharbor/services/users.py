"""Local dashboard users (``pgharbor user add/list/remove/passwd``; passwords as argon2id
hashes) and their browser sessions: ``sign_in`` checks a password, rate-limited per user
and per client, and opens a server-side session; the browser holds only its id (signed,
in a cookie: web/auth.py). Every sign-in, failed or not, is an audit event."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from pgharbor.catalog.repo import now
from pgharbor.catalog.web_auth import SessionRow, UserRow, WebAuthRepo
from pgharbor.errors import RateLimited, Unauthenticated, UsageError
from pgharbor.services import hashing
from pgharbor.services.access_tokens import check_scope
from pgharbor.services.audit import Actor, audit
from pgharbor.services.context import Services
from pgharbor.services.rules import check_name

MIN_PASSWORD = 10
_refusals: dict[str, datetime] = {}  # catalog + who -> its last logged refusal (this process)
_refusals_lock = threading.Lock()


def _first_refusal(key: str, at: datetime, window: timedelta) -> bool:
    """Log one refusal per locked-out user or client and window, not one per attempt
    (a refused attempt costs no password check: it must not cost a row either)."""
    with _refusals_lock:
        last = _refusals.get(key)
        if last is not None and at - last < window:
            return False
        if len(_refusals) > 10_000:
            _refusals.clear()
        _refusals[key] = at
        return True


@dataclass(frozen=True)
class UserView:
    name: str
    role: str
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True)
class Session:
    """An open session. ``id`` is the secret the cookie carries (signed); the catalog
    keeps only its SHA-256."""

    id: str
    user: str
    role: str
    expires_at: datetime


def _view(r: UserRow) -> UserView:
    return UserView(r.name, r.role, r.created_at, r.modified_at)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    return password


def add_user(svc: Services, actor: Actor, name: str, role: str, password: str) -> UserView:
    check_name("user", name)
    check_scope(role)
    check_password(password)
    row = WebAuthRepo(svc.catalog).add_user(name, role, hashing.hash_password(password))
    audit(svc, actor, "user_add", f"user {name!r} added, role {role}")
    return _view(row)


def list_users(svc: Services) -> list[UserView]:
    return [_view(r) for r in WebAuthRepo(svc.catalog).users()]


def remove_user(svc: Services, actor: Actor, name: str) -> UserView:
    repo = WebAuthRepo(svc.catalog)
    row = repo.user(name)
    repo.remove_user(name)
    audit(svc, actor, "user_remove", f"user {name!r} removed (and its sessions)")
    return _view(row)


def set_password(svc: Services, actor: Actor, name: str, password: str) -> UserView:
    check_password(password)
    repo = WebAuthRepo(svc.catalog)
    repo.set_password(name, hashing.hash_password(password))
    audit(svc, actor, "user_passwd", f"password of user {name!r} changed (its sessions ended)")
    return _view(repo.user(name))


def sign_in(svc: Services, name: str, password: str, client: str, ttl: float) -> Session:
    """A new session for ``name``, or Unauthenticated (one message whether the user is
    unknown or the password wrong) / RateLimited (checked before the password)."""
    s = svc.settings
    repo = WebAuthRepo(svc.catalog)
    at = now()
    window = timedelta(seconds=s.web_signin_window)
    by_user, by_client = repo.failures_since(at - window, name, client)
    if by_user >= s.web_signin_limit or by_client >= s.web_signin_limit:
        who = f"user {name!r}" if by_user >= s.web_signin_limit else f"client {client}"
        if _first_refusal(f"{s.catalog} {who}", at, window):
            audit(
                svc,
                f"user {name}",
                "signin",
                f"sign-in refused from {client}: too many failures of {who} (further "
                "refusals in this window are not logged)",
                state="refused",
            )
        raise RateLimited(
            f"too many failed sign-ins of {who}: try again later",
            hint=f"attempts are counted over {s.web_signin_window:g} s",
        )
    user = repo.find_user(name)
    ok = hashing.verify_password(
        user.password_hash if user else hashing.dummy_password_hash(), password
    )
    repo.add_attempt(name, client, ok and user is not None, at - window)
    if user is None or not ok:
        audit(svc, f"user {name}", "signin", f"sign-in failed from {client}", state="failed")
        raise Unauthenticated("wrong user name or password")
    sid = secrets.token_urlsafe(32)
    expires = at + timedelta(seconds=ttl)
    repo.add_session(hashing.sha256(sid), user.name, client, expires)
    audit(svc, f"user {name}", "signin", f"signed in from {client}")
    return Session(sid, user.name, user.role, expires)


def session(svc: Services, sid: str) -> Session:
    """The open session ``sid`` names, or Unauthenticated (unknown, ended or expired)."""
    row: SessionRow | None = WebAuthRepo(svc.catalog).session(hashing.sha256(sid))
    if row is None or row.expires_at <= now():
        raise Unauthenticated("the session has ended or expired", hint="sign in again")
    return Session(sid, row.user, row.role, row.expires_at)


def sign_out(svc: Services, sid: str) -> bool:
    repo = WebAuthRepo(svc.catalog)
    row = repo.session(hashing.sha256(sid))
    ended = repo.end_session(hashing.sha256(sid))
    if ended and row is not None:
        audit(svc, f"user {row.user}", "signout", "signed out")
    return ended
