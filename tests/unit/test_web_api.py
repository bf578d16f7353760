"""The JSON API over a real SQLite catalog, in process: reading routes answer what the
CLI's --json prints, actions queue jobs (202) or change the catalog (200) and write an
audit event naming the caller, errors are the CLI's message and exit code as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pgharbor.catalog.events import EventRepo
from pgharbor.services import schedules
from pgharbor.services.jobs import list_jobs
from tests.fixtures.web import WebKit, add_backup

PGHARBOR = str(Path(sys.executable).with_name("pgharbor"))


def _cli_json(kit: WebKit, *args: str) -> Any:
    out = subprocess.run(
        [PGHARBOR, "--catalog", kit.svc.settings.catalog or "", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={"PGHARBOR_STATE_DIR": kit.svc.settings.state_dir, "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.stdout)


def _audit(kit: WebKit) -> list[tuple[str | None, str | None, str, str]]:
    return [
        (e.actor, e.cluster, e.kind, e.message)
        for e in EventRepo(kit.svc.catalog).events()
        if e.source == "audit" and e.kind not in ("token_create", "user_add")
    ]


def test_reads_agree_with_the_cli(web: WebKit) -> None:
    add_backup(web, "20261201T000000", 30)
    h = web.bearer("read")
    for route, args in [
        ("/api/v1/clusters", ["cluster", "list"]),
        ("/api/v1/clusters/c1", ["cluster", "show", "c1"]),
        ("/api/v1/targets", ["target", "list"]),
        ("/api/v1/clusters/c1/placements", ["placement", "list", "c1"]),
        ("/api/v1/clusters/c1/restore-points", ["restore-point", "list", "c1"]),
        ("/api/v1/clusters/c1/gaps", ["wal", "gaps", "c1"]),
        ("/api/v1/jobs", ["job", "list"]),
    ]:
        r = web.client.get(route, headers=h)
        assert r.status_code == 200, (route, r.text)
        assert r.json() == _cli_json(web, *args), route
    got = web.client.get("/api/v1/clusters/c1/backups", headers=h).json()
    assert [e["backup"] for e in got["backups"]] == _cli_json(web, "backup", "list", "c1")


def test_backups_carry_their_hold_and_the_rules_keeping_them(web: WebKit) -> None:
    add_backup(web, "20261201T000000", 30)
    add_backup(web, "20261202T000000", 3)
    op = web.bearer("operate")
    r = web.client.post(
        "/api/v1/clusters/c1/backups/20261201T000000/hold", headers=op, json={"reason": "audit"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "cluster": "c1",
        "backup_id": "20261201T000000",
        "held": True,
        "until": None,
        "reason": "audit",
    }
    got = web.client.get("/api/v1/clusters/c1/backups", headers=op).json()
    by_id = {e["backup"]["id"]: e for e in got["backups"]}
    assert by_id["20261201T000000"]["hold"]["reason"] == "audit"
    assert by_id["20261201T000000"]["kept_by"] == ["hold"]
    assert by_id["20261202T000000"]["kept_by"] == ["min-backups"]
    assert by_id["20261202T000000"]["hold"] is None
    one = web.client.get("/api/v1/clusters/c1/backups/20261201T000000", headers=op).json()
    assert one["next_expire"] == "keep (hold)"

    r = web.client.post("/api/v1/clusters/c1/backups/20261201T000000/release", headers=op)
    assert r.status_code == 200 and r.json()["held"] is False
    r = web.client.post("/api/v1/clusters/c1/backups/20261201T000000/release", headers=op)
    assert r.status_code == 404 and r.json()["code"] == 6 and "not held" in r.json()["error"]
    assert _audit(web) == [
        ("token t-operate", "c1", "hold", "backup 20261201T000000 of c1 held: audit"),
        ("token t-operate", "c1", "release", "backup 20261201T000000 of c1 released"),
    ]


def test_expire_preview_changes_nothing(web: WebKit) -> None:
    add_backup(web, "20261201T000000", 30)
    add_backup(web, "20261202T000000", 3)
    from pgharbor.services import retention

    retention.set_policy(web.svc, "c1", keep_last=1)
    op = web.bearer("operate")
    r = web.client.post("/api/v1/clusters/c1/expire/preview", headers=op)
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["dry_run"] is True
    assert {b["id"]: b["rules"] for b in run["backups"]} == {
        "20261201T000000": [],
        "20261202T000000": ["min-backups", "keep-last"],
    }
    ids = [
        e["backup"]["id"]
        for e in web.client.get("/api/v1/clusters/c1/backups", headers=op).json()["backups"]
    ]
    assert ids == ["20261201T000000", "20261202T000000"]  # still both
    assert list_jobs(web.svc) == []


def test_actions_queue_jobs_and_name_the_caller(web: WebKit) -> None:
    op = web.bearer("operate")
    ids = []
    for kind in schedules.KINDS:
        r = web.client.post(f"/api/v1/clusters/c1/{kind}", headers=op)
        assert r.status_code == 202, r.text
        assert r.json()["kind"] == kind and r.json()["state"] == "queued"
        ids.append(r.json()["job"])
    jobs = {j.id: (j.kind, j.state, j.reason) for j in list_jobs(web.svc)}
    assert jobs == {
        i: (k, "queued", "requested") for i, k in zip(ids, schedules.KINDS, strict=True)
    }
    assert [(a, k) for a, _c, k, _m in _audit(web)] == [
        ("token t-operate", k) for k in schedules.KINDS
    ]
    r = web.client.get(f"/api/v1/jobs/{ids[0]}", headers=op)
    assert r.json() == _cli_json(web, "job", "show", str(ids[0]))


def test_pause_and_resume_a_schedule(web: WebKit) -> None:
    schedules.set_schedule(web.svc, None, "backup", "0 1 * * *")
    schedules.set_schedule(web.svc, "c1", "verify", "off")
    op = web.bearer("operate")
    r = web.client.post("/api/v1/schedules/default/backup/pause", headers=op)
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["cron"], r.json()["next_fires"]) == (
        False,
        "0 1 * * *",
        [],
    )
    listed = web.client.get("/api/v1/schedules", headers=op).json()
    assert listed == _cli_json(web, "schedule", "list") | {"now": listed["now"]}
    r = web.client.post("/api/v1/schedules/default/backup/resume", headers=op)
    assert r.json()["enabled"] is True and len(r.json()["next_fires"]) == 3
    r = web.client.post("/api/v1/schedules/c1/verify/resume", headers=op)
    assert r.status_code == 400 and "turned off" in r.json()["error"]
    r = web.client.post("/api/v1/schedules/c1/drill/pause", headers=op)
    assert r.status_code == 404
    r = web.client.post("/api/v1/schedules/c1/nonsense/pause", headers=op)
    assert r.status_code == 400 and r.json()["code"] == 2
    assert [m for _a, _c, k, m in _audit(web) if k == "schedule"] == [
        "backup schedule of default paused",
        "backup schedule of default resumed",
    ]


def test_errors_are_the_cli_messages_and_codes(web: WebKit) -> None:
    h = web.bearer("read")
    r = web.client.get("/api/v1/clusters/nope", headers=h)
    assert (r.status_code, r.json()) == (
        404,
        {"error": "no cluster named 'nope'", "hint": "see pgharbor cluster list", "code": 6},
    )
    r = web.client.get("/api/v1/jobs", headers=h, params={"state": "bogus"})
    assert r.status_code == 400 and r.json()["code"] == 2
    r = web.client.get("/api/v1/jobs/notanumber", headers=h)
    assert r.status_code == 400 and r.json()["error"].startswith("bad request")
    op = web.bearer("operate")
    r = web.client.post("/api/v1/clusters/c1/backups/x/hold", headers=op, json={})
    assert r.status_code == 400 and "reason" in r.json()["error"]


def test_admin_manages_tokens_and_cluster_options(web: WebKit) -> None:
    adm = web.bearer("admin")
    r = web.client.post("/api/v1/tokens", headers=adm, json={"name": "ci", "scope": "read"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["token"].startswith("phb_") and made["info"]["scope"] == "read"
    listed = web.client.get("/api/v1/tokens", headers=adm).json()
    assert made["token"] not in json.dumps(listed)
    assert {t["name"] for t in listed} == {"t-admin", "ci"}
    ci = {"Authorization": f"Bearer {made['token']}"}
    assert web.client.get("/api/v1/clusters", headers=ci).status_code == 200
    r = web.client.post("/api/v1/tokens", headers=adm, json={"name": "ci", "scope": "read"})
    assert r.status_code == 409 and r.json()["code"] == 7
    assert web.client.delete("/api/v1/tokens/ci", headers=adm).status_code == 200
    assert web.client.get("/api/v1/clusters", headers=ci).status_code == 401

    web.user("alice", "read")
    assert [u["name"] for u in web.client.get("/api/v1/users", headers=adm).json()] == ["alice"]
    assert "argon2" not in web.client.get("/api/v1/users", headers=adm).text
    assert web.client.delete("/api/v1/users/alice", headers=adm).status_code == 200
    assert web.client.get("/api/v1/users", headers=adm).json() == []
    assert web.client.delete("/api/v1/users/alice", headers=adm).status_code == 404

    r = web.client.post("/api/v1/clusters/c1/options", headers=adm, json={"active": False})
    assert r.status_code == 200, r.text
    assert r.json()["cluster"]["active"] is False
    assert _cli_json(web, "cluster", "show", "c1")["active"] is False
    op = web.bearer("operate")
    r = web.client.post("/api/v1/clusters/c1/options", headers=op, json={"active": True})
    assert r.status_code == 403
    assert ("token t-admin", "c1", "cluster_options", "c1: active False") in _audit(web)


def test_metrics_need_a_token_when_not_anonymous(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, Gauge

    from tests.fixtures.web import build_kit

    kit = build_kit(tmp_path, metrics_anonymous=False)
    reg = CollectorRegistry()
    Gauge("pgharbor_test_value", "a value", registry=reg).set(1)
    kit.ctx.registry = reg
    assert kit.client.get("/metrics").status_code == 401
    r = kit.client.get("/metrics", headers=kit.bearer("read"))
    assert r.status_code == 200 and "pgharbor_test_value 1.0" in r.text
    kit.ctx.settings = kit.ctx.settings.replace(metrics_anonymous=True)
    assert kit.client.get("/metrics").status_code == 200
