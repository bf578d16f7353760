"""The web front door's authentication on a real SQLite catalog, in process: API tokens
(Bearer), browser sessions (signed cookie, server-side row), CSRF on cookie-authenticated
changes, scopes, sign-in rate limiting, and the audit events of each."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pgharbor.catalog.events import EventRepo
from pgharbor.errors import RateLimited, Unauthenticated
from pgharbor.services import access_tokens, users
from pgharbor.web import auth
from pgharbor.web.context import load_secret, secret_path
from tests.fixtures.web import PASSWORD, WebKit, build_kit


def _audit(kit: WebKit) -> list[tuple[str | None, str, str]]:
    return [
        (e.actor, e.kind, e.state)
        for e in EventRepo(kit.svc.catalog).events()
        if e.source == "audit"
    ]


def test_no_credentials_is_401_json(web: WebKit) -> None:
    r = web.client.get("/api/v1/clusters")
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == Unauthenticated.code and "token" in body["hint"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert web.client.get("/api/v1/openapi.json").status_code == 401


def test_health_is_anonymous(web: WebKit) -> None:
    assert web.client.get("/health").status_code == 200


def test_token_reads(web: WebKit) -> None:
    h = web.bearer("read")
    r = web.client.get("/api/v1/clusters", headers=h)
    assert r.status_code == 200, r.text
    assert [c["name"] for c in r.json()] == ["c1"]
    assert web.client.get("/api/v1/whoami", headers=h).json() == {
        "name": "t-read",
        "kind": "token",
        "scope": "read",
    }


@pytest.mark.parametrize(
    "header",
    ["Bearer phb_000000000000_" + "x" * 43, "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer "],
)
def test_bad_tokens_are_401(web: WebKit, header: str) -> None:
    web.token("read")
    r = web.client.get("/api/v1/clusters", headers={"Authorization": header})
    assert r.status_code == 401


def test_wrong_secret_of_a_real_id_is_401(web: WebKit) -> None:
    good = web.token("admin")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    r = web.client.get("/api/v1/clusters", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_revoked_token_is_refused_at_once(web: WebKit) -> None:
    h = web.bearer("read")
    assert web.client.get("/api/v1/clusters", headers=h).status_code == 200
    access_tokens.revoke_token(web.svc, "cli test", "t-read")
    assert web.client.get("/api/v1/clusters", headers=h).status_code == 401


def test_expired_token_is_refused(web: WebKit) -> None:
    token = web.token("read", "short", expires="1h")
    from datetime import UTC, datetime, timedelta

    from pgharbor.catalog.schema import api_tokens

    with web.svc.catalog.engine.begin() as conn:  # an hour has passed
        conn.execute(
            api_tokens.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = web.client.get("/api/v1/clusters", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert [t.expired for t in access_tokens.list_tokens(web.svc)] == [True]


def test_token_is_stored_only_as_a_hash(web: WebKit) -> None:
    token = web.token("admin")
    import sqlalchemy as sa

    from pgharbor.catalog.schema import api_tokens

    with web.svc.catalog.engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens)).mappings().one()
    assert token not in str(dict(row))
    assert row["secret_hash"].startswith("$argon2id$")


def test_scopes(web: WebKit) -> None:
    read, operate = web.bearer("read"), web.bearer("operate")
    r = web.client.post("/api/v1/clusters/c1/backup", headers=read)
    assert r.status_code == 403 and r.json()["code"] == 24
    r = web.client.post("/api/v1/clusters/c1/backup", headers=operate)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["job"] == job["id"] and job["kind"] == "backup" and job["state"] == "queued"
    assert web.client.get(f"/api/v1/jobs/{job['id']}", headers=read).json()["reason"] == (
        "requested"
    )
    assert web.client.get("/api/v1/tokens", headers=operate).status_code == 403
    assert web.client.get("/api/v1/tokens", headers=web.bearer("admin")).status_code == 200
    assert ("token t-operate", "backup", "ok") in _audit(web)


def test_principal_can() -> None:
    p = auth.Principal("a", "user", "operate")
    assert p.can("read") and p.can("operate") and not p.can("admin")
    assert auth.Principal("b", "token", "admin").can("operate")
    assert not auth.Principal("c", "token", "read").can("operate")


def test_session_sign_in_and_cookie(web: WebKit) -> None:
    web.user("alice", "operate")
    c = web.fresh_client()
    r = c.post("/_test/login", data={"name": "alice", "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{auth.SESSION_COOKIE}=")
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/" in low
    assert "secure" not in low  # plain http here; Secure over TLS (test below)
    who = c.get("/api/v1/whoami").json()
    assert who == {"name": "alice", "kind": "user", "scope": "operate"}
    assert ("user alice", "signin", "ok") in _audit(web)


def test_secure_cookie_over_tls(tmp_path: Path) -> None:
    kit = build_kit(tmp_path)
    kit.ctx.tls = True
    kit.user("alice", "read")
    r = kit.client.post("/_test/login", data={"name": "alice", "password": PASSWORD})
    assert "secure" in r.headers["set-cookie"].lower()


def test_the_cookie_holds_no_session_in_clear_and_is_signed(web: WebKit) -> None:
    web.user("alice", "read")
    c = web.fresh_client()
    web.login(c, "alice")
    value = c.cookies[auth.SESSION_COOKIE]
    c.cookies.set(auth.SESSION_COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert c.get("/api/v1/whoami").status_code == 401


def test_wrong_password_and_unknown_user(web: WebKit) -> None:
    web.user("alice", "read")
    c = web.fresh_client()
    assert web.login(c, "alice", "not the password") == 401
    assert web.login(c, "nobody", "whatever it is") == 401
    assert c.get("/api/v1/whoami").status_code == 401
    assert ("user alice", "signin", "failed") in _audit(web)


def test_csrf_on_cookie_changes(web: WebKit) -> None:
    web.user("op", "operate")
    c = web.fresh_client()
    assert web.login(c, "op") == 200
    r = c.post("/api/v1/clusters/c1/backup")
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = c.post("/api/v1/clusters/c1/backup", headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    from pgharbor.services.jobs import list_jobs

    assert list_jobs(web.svc) == []  # nothing was queued by the refused requests
    # the right token: as a header, or as a form field
    token = _csrf(web, c)
    r = c.post("/api/v1/clusters/c1/backup", headers={"X-CSRF-Token": token})
    assert r.status_code == 202, r.text
    r = c.post("/api/v1/clusters/c1/verify", data={"csrf_token": token})
    assert r.status_code == 202, r.text
    # a Bearer request needs none
    r = web.client.post("/api/v1/clusters/c1/expire", headers=web.bearer("operate"))
    assert r.status_code == 202


def _csrf(web: WebKit, c: object) -> str:
    """The session's CSRF token as a template gets it (auth.csrf_token of a request)."""
    from fastapi.testclient import TestClient
    from starlette.requests import Request

    assert isinstance(c, TestClient)
    cookie = c.cookies[auth.SESSION_COOKIE]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"cookie", f"{auth.SESSION_COOKIE}={cookie}".encode())],
        "app": web.client.app,
    }
    return auth.csrf_token(Request(scope))


def test_expired_session_is_refused(web: WebKit) -> None:
    web.user("alice", "read")
    s = users.sign_in(web.svc, "alice", PASSWORD, "testclient", ttl=-1)  # already over
    c = web.fresh_client()
    from itsdangerous import URLSafeTimedSerializer

    c.cookies.set(
        auth.SESSION_COOKIE,
        URLSafeTimedSerializer(web.ctx.secret, salt="pgharbor-session").dumps(s.id),
    )
    r = c.get("/api/v1/whoami")
    assert r.status_code == 401 and "expired" in r.json()["error"]


def test_sign_out_ends_the_session(web: WebKit) -> None:
    web.user("alice", "read")
    c = web.fresh_client()
    web.login(c, "alice")
    assert c.get("/api/v1/whoami").status_code == 200
    stolen = c.cookies[auth.SESSION_COOKIE]
    from starlette.requests import Request

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"cookie", f"{auth.SESSION_COOKIE}={stolen}".encode())],
        "app": web.client.app,
    }
    assert auth.sign_out(web.ctx, Request(scope))
    assert c.get("/api/v1/whoami").status_code == 401  # the same cookie, replayed


def test_removing_a_user_or_its_password_ends_its_sessions(web: WebKit) -> None:
    web.user("alice", "read")
    c = web.fresh_client()
    web.login(c, "alice")
    users.set_password(web.svc, "cli test", "alice", "another long password")
    assert c.get("/api/v1/whoami").status_code == 401
    web.login(c, "alice", "another long password")
    assert c.get("/api/v1/whoami").status_code == 200
    users.remove_user(web.svc, "cli test", "alice")
    assert c.get("/api/v1/whoami").status_code == 401


def test_sign_in_rate_limit_per_user(web: WebKit) -> None:
    web.user("alice", "admin")
    limit = web.svc.settings.web_signin_limit
    for _ in range(limit):
        with pytest.raises(Unauthenticated):
            users.sign_in(web.svc, "alice", "a wrong password", "10.0.0.1", 60)
    # from elsewhere, with the right password: still refused (the user's count)
    with pytest.raises(RateLimited, match="too many failed sign-ins of user 'alice'"):
        users.sign_in(web.svc, "alice", PASSWORD, "10.0.0.2", 60)
    assert ("user alice", "signin", "refused") in _audit(web)
    for _ in range(20):  # more refusals: no more rows (one event per lock-out and window)
        with pytest.raises(RateLimited):
            users.sign_in(web.svc, "alice", PASSWORD, "10.0.0.3", 60)
    assert _audit(web).count(("user alice", "signin", "refused")) == 1


def test_sign_in_rate_limit_per_client(web: WebKit) -> None:
    web.user("bob", "read")
    for n in range(web.svc.settings.web_signin_limit):
        with pytest.raises(Unauthenticated):
            users.sign_in(web.svc, f"guess{n}", "a wrong password", "10.0.0.9", 60)
    with pytest.raises(RateLimited, match=r"client 10\.0\.0\.9"):
        users.sign_in(web.svc, "bob", PASSWORD, "10.0.0.9", 60)
    assert users.sign_in(web.svc, "bob", PASSWORD, "10.0.0.10", 60).user == "bob"


def test_rate_limit_over_http_is_429(web: WebKit) -> None:
    web.user("alice", "read")
    c = web.fresh_client()
    codes = [web.login(c, "alice", "a wrong password") for _ in range(6)]
    assert codes == [401] * 5 + [429]


def test_password_is_stored_only_as_argon2id(web: WebKit) -> None:
    web.user("alice", "read")
    import sqlalchemy as sa

    from pgharbor.catalog.schema import web_sessions, web_users

    with web.svc.catalog.engine.connect() as conn:
        row = conn.execute(sa.select(web_users)).mappings().one()
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in str(dict(row))
    s = users.sign_in(web.svc, "alice", PASSWORD, "x", 60)
    with web.svc.catalog.engine.connect() as conn:
        ids = [r.id_hash for r in conn.execute(sa.select(web_sessions))]
    assert s.id not in ids and len(ids) == 1


def test_secret_file_is_made_once_mode_0600(tmp_path: Path) -> None:
    kit = build_kit(tmp_path)
    path = secret_path(kit.svc.settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(kit.svc.settings) == kit.ctx.secret  # read back, not made again
