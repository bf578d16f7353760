"""The API of a real ``pgharbor serve`` process on loopback, over a real PostgreSQL
cluster: the authorization walk over HTTP (every operation of the OpenAPI document
refuses a request without credentials; a read token cannot run any action), a backup
queued through the API and run by the node to its end, a check answering what the CLI's
check --json does, the TLS rule of --listen, and https off loopback."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster
from tests.fixtures.serve import ServeNode, wait_for
from tests.fixtures.tls import self_signed
from tests.fixtures.web import READ_METHODS, operations

pytestmark = pytest.mark.integration
PASSWORD = "a long enough password"


@pytest.fixture
def nodes() -> Iterator[list[ServeNode]]:
    started: list[ServeNode] = []
    yield started
    for n in started:
        if n.proc.poll() is None:
            n.stop()


def _token(h: Harbor, name: str, scope: str) -> dict[str, str]:
    token = h.run("token", "create", name, "--scope", scope).stdout.strip()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(
    harbor: Harbor, pg_cluster: PgCluster, workdir: Path, nodes: list[ServeNode]
) -> tuple[Harbor, ServeNode]:
    harbor.target("t1")
    harbor.register(pg_cluster, "c1", "t1")
    harbor.archive_to(pg_cluster)
    node = ServeNode(harbor, "web", workdir / "serve.log")
    nodes.append(node)
    node.wait_healthy()
    return harbor, node


def test_authorization_walk_over_http(served: tuple[Harbor, ServeNode]) -> None:
    h, node = served
    read = _token(h, "reader", "read")
    with httpx.Client(base_url=f"http://127.0.0.1:{node.port}", timeout=60) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/api/v1/openapi.json").status_code == 401
        doc = http.get("/api/v1/openapi.json", headers=read).json()
        ops = operations(doc)
        assert len(ops) >= 30
        acts = 0
        for method, path in ops:
            r = http.request(method, path)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["code"] == 23
            r = http.request(method, path, headers=read, json={})
            if method.lower() in READ_METHODS:
                expected_refused = path.startswith(("/api/v1/tokens", "/api/v1/users"))
                assert (r.status_code == 403) == expected_refused, (method, path, r.text)
                assert r.status_code != 401, (method, path)
            else:
                acts += 1
                assert r.status_code == 403, (method, path, r.text)
        assert acts >= 10
    jobs: list[dict[str, Any]] = h.json("job", "list")
    assert jobs == []  # nothing was queued by the read token


def test_queue_a_backup_and_watch_it_finish(served: tuple[Harbor, ServeNode]) -> None:
    h, node = served
    op = _token(h, "ops", "operate")
    with httpx.Client(base_url=f"http://127.0.0.1:{node.port}", timeout=60) as http:
        r = http.post("/api/v1/clusters/c1/backup", headers=op)
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]

        def finished() -> dict[str, Any] | None:
            j: dict[str, Any] = http.get(f"/api/v1/jobs/{job_id}", headers=op).json()
            return j if j["state"] in ("done", "failed") else None

        job = wait_for("the backup job", finished, 180)
        assert job["state"] == "done", job
        listed = http.get("/api/v1/clusters/c1/backups", headers=op).json()
        assert [e["backup"]["status"] for e in listed["backups"]] == ["ok"]
        assert [e["backup"] for e in listed["backups"]] == h.json("backup", "list", "c1")
        events = http.get("/api/v1/events", headers=op, params={"cluster": "c1"}).json()
        assert any(
            e["actor"] == "token ops" and e["kind"] == "backup" and e["source"] == "audit"
            for e in events
        )
        # a check answers what `pgharbor check … --json` prints
        api = http.get("/api/v1/checks/backup/c1", headers=op).json()
        cli = json.loads(h.run("check", "backup", "c1", "--json", check=False).stdout)

        def shape(doc: dict[str, Any]) -> Any:  # without the ages, which move on
            items = [
                (i["name"], i["state"], [m["label"] for m in i["metrics"]]) for i in doc["items"]
            ]
            return sorted(doc), doc["service"], doc["state"], items

        assert shape(api) == shape(cli)
        assert api["summary"].split(" ended ")[0] == cli["summary"].split(" ended ")[0]


def test_listen_off_loopback_needs_tls(harbor: Harbor, workdir: Path) -> None:
    line = harbor.fails("serve", "--listen", "0.0.0.0:8420", code=2)
    assert line == (
        "pgharbor: error: refusing to listen on 0.0.0.0 without TLS "
        "(hint: give --tls-cert and --tls-key, or listen on 127.0.0.1)"
    )
    line = harbor.fails("serve", "--listen", "db.example.com:8420", code=2)
    assert "without TLS" in line
    cert, _key = self_signed(workdir)
    line = harbor.fails("serve", "--listen", "127.0.0.1:8420", "--tls-cert", str(cert), code=2)
    assert "both --tls-cert and --tls-key" in line
    line = harbor.fails(
        "serve", "--tls-cert", str(cert), "--tls-key", str(workdir / "missing.key"), code=2
    )
    assert "cannot use --tls-cert" in line


def test_https_off_loopback(harbor: Harbor, workdir: Path, nodes: list[ServeNode]) -> None:
    cert, key = self_signed(workdir)
    harbor.run("user", "add", "alice", "--role", "read", "--password-stdin", stdin=PASSWORD + "\n")
    node = ServeNode(
        harbor,
        "tls",
        workdir / "serve.log",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        host="0.0.0.0",
    )
    nodes.append(node)
    ctx = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{node.port}"
    with httpx.Client(base_url=base, verify=ctx, timeout=30) as http:

        def up() -> bool:
            try:
                return http.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the https node", up, 30)
        read = _token(harbor, "reader", "read")
        assert http.get("/api/v1/clusters", headers=read).json() == []
        assert http.get("/api/v1/clusters").status_code == 401
    users = harbor.json("user", "list")
    assert [(u["name"], u["role"]) for u in users] == [("alice", "read")]
    assert PASSWORD not in json.dumps(users)
    with pytest.raises(httpx.TransportError):  # plain http is not served
        httpx.get(f"http://127.0.0.1:{node.port}/health", timeout=10)
