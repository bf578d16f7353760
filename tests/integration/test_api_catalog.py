"""The web front door's catalog rows on both catalogs (SQLite and a real PostgreSQL):
tokens, users, sessions, sign-in attempts and the audit events, through the app in
process."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgharbor.catalog.events import EventRepo
from pgharbor.errors import RateLimited, Unauthenticated
from pgharbor.services import access_tokens, users
from tests.fixtures.catalogs import catalog_url  # noqa: F401
from tests.fixtures.web import PASSWORD, add_backup, build_kit

pytestmark = pytest.mark.integration


def test_web_auth_on_both_catalogs(tmp_path: Path, catalog_url: str) -> None:  # noqa: F811
    kit = build_kit(tmp_path, catalog_url)
    op = kit.bearer("operate")
    assert kit.client.get("/api/v1/clusters", headers=op).status_code == 200
    add_backup(kit, "20261201T000000", 30)
    r = kit.client.post(
        "/api/v1/clusters/c1/backups/20261201T000000/hold", headers=op, json={"reason": "x"}
    )
    assert r.status_code == 200, r.text
    assert kit.client.post("/api/v1/clusters/c1/backup", headers=op).status_code == 202
    access_tokens.revoke_token(kit.svc, "cli test", "t-operate")
    assert kit.client.get("/api/v1/clusters", headers=op).status_code == 401

    kit.user("alice", "read")
    c = kit.fresh_client()
    assert kit.login(c, "alice") == 200
    assert c.get("/api/v1/whoami").json()["name"] == "alice"
    users.set_password(kit.svc, "cli test", "alice", "a new long password")
    assert c.get("/api/v1/whoami").status_code == 401
    for _ in range(kit.svc.settings.web_signin_limit):
        with pytest.raises(Unauthenticated):
            users.sign_in(kit.svc, "alice", PASSWORD, "10.1.1.1", 60)
    with pytest.raises(RateLimited):
        users.sign_in(kit.svc, "alice", "a new long password", "10.1.1.2", 60)
    users.remove_user(kit.svc, "cli test", "alice")
    kinds = [(e.kind, e.state) for e in EventRepo(kit.svc.catalog).events() if e.actor]
    assert ("hold", "ok") in kinds and ("backup", "ok") in kinds
    assert ("signin", "failed") in kinds and ("signin", "refused") in kinds
    assert kinds[-1] == ("user_remove", "ok")


def test_an_unreachable_catalog_is_503_with_the_cli_code(tmp_path: Path) -> None:
    from pgharbor.errors import CatalogUnavailable
    from pgharbor.services.context import Services
    from tests.fixtures.postgres import allocate_port

    kit = build_kit(tmp_path)
    token = kit.token("read")
    away = f"postgresql://postgres@127.0.0.1:{allocate_port()}/nothing"  # nothing listens
    kit.ctx.services = Services(kit.svc.settings.replace(catalog=away, catalog_timeout=2.0))
    r = kit.client.get("/api/v1/clusters", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503, r.text
    assert r.json()["code"] == CatalogUnavailable.code
