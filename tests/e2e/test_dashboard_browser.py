"""The dashboard as a person uses it: Debian's Chromium (Playwright) against a real
``pgharbor serve`` on loopback, a PostgreSQL catalog and a real PostgreSQL 15 cluster
archiving to a file target.

An operator signs in, sees the fleet, opens the cluster (its timeline picture), triggers
a backup and watches its job page until the job is done, holds and releases the new
backup, previews an expire (the dry run) and signs out. Then what must be refused is:
a form posted without the CSRF token, a session that expired (its catalog row past its
end) and a signed-out one, and a read-scope user (no action offered; posting one anyway
is 403; her browser runs no JavaScript: every page still reads) — and none of these
queued a job.

``PGHARBOR_SCREENSHOTS=docs pytest tests/e2e/test_dashboard_browser.py`` also saves the
screenshots of docs/dashboard.md (docs/dashboard-*.png).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fixtures.browser import add_user, screenshot, sign_in
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster
from tests.fixtures.serve import ServeNode, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

OPERATOR, READER = ("olga", "olga's long passphrase 1"), ("rita", "rita's long passphrase 2")
WAIT_MS = 120_000


@pytest.fixture
def world(
    workdir: Path, pg_cluster: PgCluster, catalog_pg_url: str
) -> Iterator[tuple[Harbor, ServeNode, str]]:
    h = Harbor(workdir, catalog=catalog_pg_url)
    h.run("init")
    h.target("t1")
    h.register(pg_cluster, "c1", "t1")
    h.archive_to(pg_cluster)
    pg_cluster.pgbench_init(scale=1)
    pg_cluster.execute("SELECT pg_switch_wal()")
    h.run("retention", "set", "--default", "--keep-last", "1")
    h.run("schedule", "set", "--default", "verify", "0 4 * * *")
    add_user(h, *OPERATOR, role="operate")
    add_user(h, *READER, role="read")
    node = ServeNode(h, "n1", workdir / "serve.log", PGHARBOR_EVENTS_INTERVAL="2")
    try:
        node.wait_healthy()
        yield h, node, catalog_pg_url
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()


def _jobs(h: Harbor) -> list[tuple[int, str]]:
    return [(j["id"], j["kind"]) for j in h.json("job", "list")]


def _csrf(page: Any) -> str:
    value: str = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert re.fullmatch(r"[0-9a-f]{64}", value), value
    return value


def test_operator_walkthrough(browser: Any, world: tuple[Harbor, ServeNode, str]) -> None:
    h, node, _ = world
    base = f"http://127.0.0.1:{node.port}"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)

    # not signed in: the sign-in form
    page.goto(f"{base}/clusters/c1")
    assert page.url.startswith(f"{base}/login?next=")
    screenshot(page, "login")
    page.fill("#name", OPERATOR[0])
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert page.url.startswith(f"{base}/login") and page.locator("#login-error").count() == 1
    page.fill("#name", OPERATOR[0])
    page.fill("#password", OPERATOR[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/clusters/c1")  # back where it was going
    cookie = next(c for c in context.cookies() if c["name"] == "pgharbor_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # the fleet: the cluster's row, its state from the checks serve records
    page.goto(f"{base}/")
    row = page.locator('tr[data-cluster="c1"]')
    assert row.count() == 1

    def checked() -> bool:
        page.goto(f"{base}/")
        return (
            "UNCHECKED" not in page.locator('tr[data-cluster="c1"] td.cluster-state').inner_text()
        )

    wait_for("serve to record the checks of c1", checked, 120)
    assert page.locator("#who").inner_text() == "olga (operate)"
    # the backlog: parsed from the text the real archive check recorded (nothing waits)
    assert page.locator('tr[data-cluster="c1"] td.backlog').inner_text() == "0"
    # times: UTC in the title, the viewer's zone in the text (the script ran)
    t = page.locator("tr[data-cluster=c1] time").first
    assert t.get_attribute("title", timeout=5000).endswith("Z")
    assert t.get_attribute("data-local") == "1"

    # the cluster page: the timeline picture; trigger a backup, follow its job
    page.click('tr[data-cluster="c1"] a[href="/clusters/c1"]')
    page.wait_for_url(f"{base}/clusters/c1")
    assert page.locator("svg#timeline rect.wal").count() >= 1
    before = _jobs(h)
    page.click("#trigger-backup")
    page.wait_for_url(re.compile(r".*/jobs/\d+\?flash=queued$"))
    job_id = int(page.url.split("/jobs/")[1].split("?")[0])
    assert (job_id, "backup") in _jobs(h) and len(_jobs(h)) == len(before) + 1
    page.wait_for_selector('#job-status[data-state="done"]', timeout=WAIT_MS)  # htmx polled
    assert "(refreshing)" not in page.inner_text("#job-state")
    screenshot(page, "job")
    (backup,) = [b for b in h.json("backup", "list", "c1") if b["status"] == "ok"]

    # a drill of it, triggered and followed the same way; a named restore point
    page.goto(f"{base}/clusters/c1")
    page.click("#trigger-drill")
    page.wait_for_url(re.compile(r".*/jobs/\d+\?flash=queued$"))
    page.wait_for_selector('#job-status[data-state="done"]', timeout=WAIT_MS)
    h.run("restore-point", "create", "c1", "before-upgrade")

    # the cluster page again: backup, drill and restore point on the picture
    page.goto(f"{base}/clusters/c1")
    assert page.locator("svg#timeline rect.backup").count() == 1
    assert page.locator("svg#timeline circle.drill-ok").count() == 1
    assert page.locator("svg#timeline polygon.point").count() == 1
    assert page.locator("svg#timeline rect.window").count() >= 1
    page.wait_for_selector("#replication table#lag")  # htmx loaded it from the primary
    screenshot(page, "cluster")

    # hold, then release the backup
    page.click(f'tr[data-backup="{backup["id"]}"] a')
    page.fill("#reason", "quarterly audit")
    page.click("#hold-button")
    page.wait_for_url(re.compile(r".*flash=held$"))
    assert "held: quarterly audit" in page.inner_text("#hold")
    assert [b["id"] for b in h.json("backup", "list", "c1") if b["id"] == backup["id"]]
    assert "restore c1 --backup" in page.inner_text("#restore-command")
    assert page.locator("table#files tbody tr").count() > 10  # the manifest's files
    screenshot(page, "backup", full=False)
    page.click("#release")
    page.wait_for_url(re.compile(r".*flash=released$"))
    assert page.inner_text("#hold") == "not held"
    audit = [e for e in h.json("events", "c1") if e["source"] == "audit"]
    assert [(e["kind"], e["actor"]) for e in audit][-4:] == [
        ("backup", "user olga"),
        ("drill", "user olga"),
        ("hold", "user olga"),
        ("release", "user olga"),
    ], audit

    # the expire preview: the dry run's verdicts, with the confirm button
    page.goto(f"{base}/clusters/c1")
    page.click("#expire-preview")
    verdict = page.locator(f'tr[data-backup="{backup["id"]}"] .verdict').inner_text()
    assert verdict.startswith("keep"), verdict
    assert page.locator("#confirm-expire").count() == 1
    screenshot(page, "expire")
    for name in ("targets", "schedules", ""):
        page.goto(f"{base}/{name}")
        screenshot(page, name or "fleet")
        if name == "schedules":
            assert page.locator('tr[data-schedule="default/verify"]').count() == 1
    proven = page.locator('tr[data-cluster="c1"] td').nth(6).inner_text()
    assert proven != "never" and proven.startswith("20"), proven  # the drill's time

    # sign out: back to the form; the old cookie opens nothing
    page.click("#sign-out")
    page.wait_for_url(f"{base}/login")
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/login")
    context.close()


def test_refusals(browser: Any, world: tuple[Harbor, ServeNode, str]) -> None:
    h, node, catalog_url = world
    base = f"http://127.0.0.1:{node.port}"
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, base, *OPERATOR)
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/clusters/c1")
    token = _csrf(page)
    jobs = _jobs(h)

    # a form posted without its CSRF token (the session cookie alone) is refused
    r = page.request.post(f"{base}/clusters/c1/trigger", form={"kind": "backup"})
    assert r.status == 403 and "CSRF token is missing or wrong" in r.text()
    r = page.request.post(
        f"{base}/clusters/c1/trigger", form={"kind": "backup", "csrf_token": "0" * 64}
    )
    assert r.status == 403
    assert _jobs(h) == jobs

    # the session expires (its row's end passes): pages ask to sign in, forms do nothing
    with psycopg.connect(catalog_url, autocommit=True) as conn:
        done = conn.execute(
            "UPDATE web_sessions SET expires_at = now() - interval '1 second' WHERE user_name = %s",
            (OPERATOR[0],),
        )
        assert done.rowcount == 1
    page.goto(f"{base}/clusters/c1")
    assert page.url.startswith(f"{base}/login?next=")
    r = page.request.post(
        f"{base}/clusters/c1/trigger",
        form={"kind": "backup", "csrf_token": token},
        max_redirects=0,
    )
    assert r.status == 303 and r.headers["location"].startswith("/login")
    api = page.request.get(f"{base}/api/v1/clusters")
    assert api.status == 401
    assert _jobs(h) == jobs
    context.close()

    # a read-scope user, in a browser without JavaScript: reads every page (UTC times,
    # the replication section as a link), and can trigger nothing
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, base, *READER)
    page.wait_for_url(f"{base}/")
    stamp = page.locator('tr[data-cluster="c1"] time').first
    assert stamp.inner_text().endswith("Z") and stamp.get_attribute("data-local") is None
    for path in ("/targets", "/schedules", "/jobs", "/clusters/c1/replication"):
        page.goto(f"{base}{path}")
        assert page.locator("main table").count() >= 1, path
    page.goto(f"{base}/clusters/c1")
    assert page.locator("svg#timeline").count() == 1
    assert page.locator("#trigger-backup").count() == 0
    assert page.locator("#expire-preview").count() == 0
    token = _csrf(page)  # the sign-out form's: her session's valid token
    for path in ("/clusters/c1/trigger", "/clusters/c1/expire"):
        r = page.request.post(f"{base}{path}", form={"kind": "backup", "csrf_token": token})
        assert r.status == 403 and "needs operate" in r.text(), path
    page.goto(f"{base}/clusters/c1/expire")
    assert "needs operate" in page.inner_text("#error")
    assert _jobs(h) == jobs
    context.close()
