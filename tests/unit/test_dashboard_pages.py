"""The dashboard's pages and forms in process (FastAPI's TestClient over a real SQLite
catalog): every page asks for a sign-in; the sign-in form and its own CSRF token; the
forms need the operate scope and the session's CSRF token, call the audited actions, and
a signed-out session is refused; times are <time> elements in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from pgharbor.catalog.events import EventRepo
from pgharbor.catalog.retention import RetentionRepo
from pgharbor.services import jobs as job_service
from pgharbor.services import retention
from pgharbor.services import schedules as schedule_service
from tests.fixtures import dashboard as d
from tests.fixtures.web import PASSWORD, WebKit

PAGES = [
    "/",
    "/clusters/c1",
    "/clusters/c1/replication",
    "/clusters/c1/backups/b1",
    "/clusters/c1/expire",
    "/targets",
    "/schedules",
    "/jobs",
    "/jobs/1",
]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert found, html[:500]
    return found.group(1)


def _form_token(html: str, action: str) -> str:
    """The CSRF token inside the form posting to ``action`` (as a browser submits it)."""
    found = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert found, (action, html[:300])
    return _csrf(found.group(1))


def _sign_in(client: TestClient, name: str, password: str = PASSWORD) -> int:
    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    return r.status_code


def _world(web: WebKit) -> None:
    cat = web.svc.catalog
    known = {t.name: t.id for t in cat.targets()}  # the web kit may have made t1
    t1 = known.get("t1") or cat.add_target("t1", "file:///nonexistent/t1").id
    c1 = cat.cluster("c1").id
    d.archive(cat, c1, t1, list(range(1, 6)), T0)
    d.add_backup(cat, c1, "b1", t1, T0 + timedelta(minutes=2))
    schedule_service.set_schedule(web.svc, None, "backup", "0 3 * * *")
    retention.set_policy(web.svc, None, keep_last=1)
    web.user("olga", "operate")
    web.user("rita", "read")


def _jobs(web: WebKit) -> list[tuple[str, str]]:
    return [(j.kind, j.reason) for j in job_service.list_jobs(web.svc)]


def test_every_page_asks_for_a_sign_in(web: WebKit) -> None:
    _world(web)
    for path in PAGES:
        r = web.client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next="), path
    for path in ["/clusters/c1/trigger", "/clusters/c1/backups/b1/hold", "/schedules/pause"]:
        r = web.client.post(path, data={"kind": "backup"}, follow_redirects=False)
        assert (r.status_code, r.headers["location"][:7]) == (303, "/login?"), path
    assert _jobs(web) == []


def test_sign_in_form(web: WebKit) -> None:
    _world(web)
    c = web.client
    r = c.post("/login", data={"name": "olga", "password": PASSWORD, "next": "/"})
    assert r.status_code == 403 and "sign-in form expired" in r.text  # no form token
    assert _sign_in(c, "olga", "wrong password") == 401
    assert _sign_in(c, "olga") == 303
    page = c.get("/")
    assert page.status_code == 200 and 'data-cluster="c1"' in page.text
    assert "olga (operate)" in page.text
    assert 'data-cluster="c1"' in c.get("/?state=UNCHECKED").text  # no check recorded yet
    only_ok = c.get("/?state=OK").text
    assert 'data-cluster="c1"' not in only_ok and "No cluster in state OK." in only_ok
    # an off-site "next" never leaves the site
    token = _csrf(c.get("/login").text)
    r = c.post(
        "/login",
        data={"name": "olga", "password": PASSWORD, "csrf_token": token, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_pages_render_for_a_reader(web: WebKit) -> None:
    _world(web)
    assert _sign_in(web.client, "rita") == 303
    for path in [p for p in PAGES[:8] if not p.endswith(("/replication", "/expire"))]:
        r = web.client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
    cluster = web.client.get("/clusters/c1").text
    assert '<svg class="timeline"' in cluster and 'class="window"' in cluster
    assert 'id="trigger-backup"' not in cluster  # a reader sees no action
    backup = web.client.get("/clusters/c1/backups/b1").text
    assert re.search(
        r'<time datetime="2026-11-01T12:02:00\+00:00" title="2026-11-01 12:02:00Z">', backup
    )
    assert "pgharbor restore c1 --backup b1 --pgdata" in backup
    assert web.client.get("/clusters/nope").status_code == 404
    r = web.client.get("/clusters/c1/expire")
    assert r.status_code == 403 and "this needs operate" in r.text


def test_a_reader_cannot_change_anything(web: WebKit) -> None:
    _world(web)
    assert _sign_in(web.client, "rita") == 303
    token = _csrf(web.client.get("/").text)  # the sign-out form's: a valid session token
    for path, data in [
        ("/clusters/c1/trigger", {"kind": "backup"}),
        ("/clusters/c1/expire", {}),
        ("/clusters/c1/backups/b1/hold", {"reason": "x"}),
        ("/schedules/pause", {"scope": "default", "kind": "backup"}),
    ]:
        r = web.client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 403 and "this needs operate" in r.text, path
    assert _jobs(web) == []
    assert RetentionRepo(web.svc.catalog).holds(web.svc.catalog.cluster("c1").id) == {}


def test_operate_forms(web: WebKit) -> None:
    _world(web)
    c = web.client
    assert _sign_in(c, "olga") == 303
    token = _form_token(c.get("/clusters/c1").text, "/clusters/c1/trigger")
    assert token == _csrf(c.get("/").text)  # every form of the session carries its token
    assert (
        _form_token(c.get("/clusters/c1/backups/b1").text, "/clusters/c1/backups/b1/hold") == token
    )
    assert _form_token(c.get("/schedules").text, "/schedules/pause") == token
    assert _form_token(c.get("/clusters/c1/expire").text, "/clusters/c1/expire") == token
    r = c.post("/clusters/c1/trigger", data={"kind": "backup"}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text  # no token
    r = c.post(
        "/clusters/c1/trigger",
        data={"kind": "backup", "csrf_token": "x" * 64},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert _jobs(web) == []
    r = c.post(
        "/clusters/c1/trigger", data={"kind": "backup", "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    (job,) = job_service.list_jobs(web.svc)
    assert r.headers["location"] == f"/jobs/{job.id}?flash=queued"
    assert (job.kind, job.reason, job.state) == ("backup", "requested", "queued")
    page = c.get(r.headers["location"]).text
    assert 'hx-trigger="every 1s"' in page and 'http-equiv="refresh"' in page  # follows it
    # hold, then release, each an audited action of olga
    r = c.post(
        "/clusters/c1/backups/b1/hold",
        data={"reason": "audit 2026", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/clusters/c1/backups/b1?flash=held"
    cid = web.svc.catalog.cluster("c1").id
    assert RetentionRepo(web.svc.catalog).holds(cid)["b1"].reason == "audit 2026"
    assert "held: audit 2026" in c.get("/clusters/c1/backups/b1").text
    c.post("/clusters/c1/backups/b1/release", data={"csrf_token": token})
    assert RetentionRepo(web.svc.catalog).holds(cid) == {}
    r = c.post(  # with an end; a time without a zone is the CLI's error, as a page
        "/clusters/c1/backups/b1/hold",
        data={"reason": "x", "until": "2027-01-31 00:00", "csrf_token": token},
    )
    assert r.status_code == 400 and RetentionRepo(web.svc.catalog).holds(cid) == {}
    c.post(
        "/clusters/c1/backups/b1/hold",
        data={"reason": "x", "until": "2027-01-31T00:00:00Z", "csrf_token": token},
    )
    until = RetentionRepo(web.svc.catalog).holds(cid)["b1"].until
    assert until == datetime(2027, 1, 31, tzinfo=UTC)
    c.post("/clusters/c1/backups/b1/release", data={"csrf_token": token})
    # the expire preview (a dry run), then its confirmation queues the job
    preview = c.get("/clusters/c1/expire").text
    assert 'data-backup="b1"' in preview and "Expire c1: preview (dry run)" in preview
    r = c.post("/clusters/c1/expire", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert sorted(_jobs(web)) == [("backup", "requested"), ("expire", "requested")]
    # pause and resume the fleet's backup schedule
    c.post("/schedules/pause", data={"scope": "default", "kind": "backup", "csrf_token": token})
    (s,) = schedule_service.list_schedules(web.svc).schedules
    assert not s.enabled and s.cron == "0 3 * * *"
    c.post("/schedules/resume", data={"scope": "default", "kind": "backup", "csrf_token": token})
    assert schedule_service.list_schedules(web.svc).schedules[0].enabled
    actors = {e.message: getattr(e, "actor", None) for e in EventRepo(web.svc.catalog).events()}
    held = [m for m in actors if "held" in m]
    assert held and actors[held[0]] == "user olga", actors


def test_a_signed_out_session_is_refused(web: WebKit) -> None:
    _world(web)
    c = web.client
    assert _sign_in(c, "olga") == 303
    token = _csrf(c.get("/").text)
    cookie = c.cookies.get("pgharbor_session")
    r = c.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    replay = TestClient(c.app, cookies={"pgharbor_session": cookie or ""})
    assert replay.get("/", follow_redirects=False).status_code == 303
    r = replay.post(
        "/clusters/c1/trigger", data={"kind": "backup", "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert _jobs(web) == []


def test_static_assets(web: WebKit) -> None:
    htmx = web.client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and "Zero-Clause BSD" in htmx.text[:600]
    assert web.client.get("/static/pgharbor.css").status_code == 200
    assert 'querySelectorAll("time[datetime]")' in web.client.get("/static/pgharbor.js").text


def test_the_sign_in_form_is_rate_limited(web: WebKit) -> None:
    _world(web)
    limit = web.svc.settings.web_signin_limit
    codes = [_sign_in(web.client, "olga", "wrong") for _ in range(limit)]
    assert codes == [401] * limit
    token = _csrf(web.client.get("/login").text)
    r = web.client.post(
        "/login",
        data={"name": "olga", "password": PASSWORD, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )  # the right password too, while the window lasts
    assert r.status_code == 429 and "too many failed sign-ins" in r.text
    assert "pgharbor_session" not in r.cookies
