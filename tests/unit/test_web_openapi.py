"""The authorization walk, in process: every operation of /api/v1/openapi.json refuses a
request without credentials (401) and with a broken token (401); a read token reaches
every reading route and cannot run any action (403); every route of the app under /api/v1
is in the document (none escapes the walk)."""

from __future__ import annotations

from fastapi.routing import APIRoute

from tests.fixtures.web import READ_METHODS, SAMPLE, WebKit, operations

CONNECTS = "/api/v1/checks/"


def _document(web: WebKit) -> dict:  # type: ignore[type-arg]
    token = web.token("read", "walker")
    r = web.client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    doc: dict = r.json()  # type: ignore[type-arg]
    return doc


def test_every_route_needs_credentials(web: WebKit) -> None:
    ops = operations(_document(web))
    assert len(ops) >= 30
    assert web.client.get("/api/v1/openapi.json").status_code == 401
    for method, path in ops:
        for headers in ({}, {"Authorization": "Bearer phb_000000000000_" + "A" * 43}):
            r = web.client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            assert r.json()["code"] == 23


def test_a_read_token_reads_but_cannot_act(web: WebKit) -> None:
    read = web.bearer("read")
    actions = 0
    for method, path in operations(_document(web)):
        if path.startswith(CONNECTS):
            continue  # a check connects to the cluster: the integration walk has it
        r = web.client.request(method, path, headers=read, json={})
        if method.lower() in READ_METHODS:
            if path.startswith(("/api/v1/tokens", "/api/v1/users")):
                assert r.status_code == 403, (method, path)
            else:
                assert r.status_code not in (401, 403), (method, path, r.text)
        else:
            actions += 1
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert r.json()["code"] == 24
    assert actions >= 10


def test_no_api_route_escapes_the_document(web: WebKit) -> None:
    documented = {path for _m, path in operations(_document(web))}
    for route in web.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path.startswith("/api/v1"):
            if route.path == "/api/v1/openapi.json":
                continue
            path = route.path
            for key, value in SAMPLE.items():
                path = path.replace("{" + key + "}", value)
            assert path in documented, route.path
