#!/usr/bin/env python3
"""Page load times of the dashboard and the API for a fleet of 1,000 clusters on a
PostgreSQL catalog.

The catalog of bench/catalog_scale.py (bench/scheduler_scale.py's 1,000 clusters, 1
million WAL rows and a month of job history, plus 12 backups per cluster, one held) and,
for the dashboard's columns, ten check states per cluster (one in twenty clusters
WARNING on ``archive``, one in fifty CRITICAL on ``backup``), a passed drill per
cluster and twenty events per cluster. The web app (pgharbor.web.app.create_app, as
``pgharbor serve`` builds it) is served by uvicorn on loopback; a signed-in session
(the sign-in form) requests each page ``--requests`` times after one warm-up, and the
median, p90 and max wall times are kept, with the SQL statements one request sends.

Usage (as root: re-runs itself as postgres), from the repository:
    .venv/bin/python bench/dashboard.py [--clusters 1000] [--wal 1000000] [--requests 9]
        [--out bench/out/dashboard.json]
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from catalog_scale import Capture, add_backups
from cluster import Server
from common import as_postgres, work_folder
from scheduler_scale import catalog_server, cleanup, pct, say, setup, write_results

SERVICES = (
    "archive",
    "copies",
    "backup",
    "timeline",
    "targets",
    "replication-lag",
    "replication-slots",
    "gaps",
    "scheduler",
    "drill",
)
PASSWORD = "bench passphrase 1"


def add_dashboard_rows(srv: Server) -> None:
    values = ", ".join(f"('{s}')" for s in SERVICES)
    srv.sql(
        f"""
        INSERT INTO check_states (cluster_id, service, state, text, changed_at, checked_at)
          SELECT c.id, s.name,
                 CASE WHEN s.name = 'archive' AND right(c.id, 2)::int % 20 = 0 THEN 1
                      WHEN s.name = 'backup' AND right(c.id, 2)::int % 50 = 7 THEN 2
                      ELSE 0 END,
                 CASE WHEN s.name = 'archive' THEN
                        (right(c.id, 1)::int) || ' WAL file(s) waiting; last archived 1m ago'
                      ELSE s.name || ' fine' END,
                 now() - interval '3 hours', now() - interval '1 minute'
          FROM clusters c, (VALUES {values}) s(name);
        INSERT INTO drills (cluster_id, backup_id, target, status, host, pid, started_at,
              finished_at, total_s, modified_at)
          SELECT c.id, c.id || '-b10', 'immediate', 'ok', 'bench', 1,
                 now() - interval '2 hours', now() - interval '2 hours' + interval '40 s', 40,
                 now()
          FROM clusters c;
        INSERT INTO events (at, cluster_id, source, kind, state, previous, message)
          SELECT now() - (i * interval '1 hour'), c.id, 'check', 'archive', 'OK', 'WARNING',
                 'back to normal'
          FROM clusters c, generate_series(1, 20) i;
        ANALYZE;
        """,
        db="pgharbor",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(url: str, state: Path) -> tuple[Any, Any, int]:
    import uvicorn

    from pgharbor.services import users
    from pgharbor.services.context import Services
    from pgharbor.settings import load_settings
    from pgharbor.web.app import create_app
    from pgharbor.web.context import WebContext

    settings = load_settings(catalog=url, env={"PGHARBOR_STATE_DIR": str(state)})
    svc = Services(settings, pooled=True)
    users.add_user(svc, "bench", "bench", "read", PASSWORD)
    app = create_app(WebContext.build(svc))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, svc, port


def sign_in(client: Any) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form[:300]
    r = client.post(
        "/login", data={"name": "bench", "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert r.status_code == 200 and 'id="fleet"' in r.text, r.text[:300]


def measure(client: Any, capture: Capture, path: str, n: int, check: str) -> dict[str, Any]:
    first = client.get(path)
    assert first.status_code == 200 and check in first.text, (path, first.text[:300])
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, path
    capture.seen.clear()
    capture.on = True
    client.get(path)
    capture.on = False
    return {
        "requests": n,
        "ms_median": round(1000 * statistics.median(times), 1),
        "ms_p90": round(1000 * pct(times, 0.9), 1),
        "ms_max": round(1000 * max(times), 1),
        "bytes": len(first.content),
        "sql_statements": len(capture.seen),
    }


def run_bench(url: str, base: Path, n: int, clusters: int) -> dict[str, Any]:
    import httpx

    state = base / "state"
    state.mkdir(mode=0o700)
    server, svc, port = serve(url, state)
    capture = Capture(svc.catalog.engine)
    mid = f"c{clusters // 2:05d}"
    pages = {
        "fleet /": ("/", 'data-cluster="c00001"'),
        f"cluster /clusters/{mid}": (f"/clusters/{mid}", 'id="timeline"'),
        f"backup /clusters/{mid}/backups/{mid}-b12": (
            f"/clusters/{mid}/backups/{mid}-b12",
            'id="restore-command"',
        ),
        "jobs /jobs": ("/jobs", 'id="jobs"'),
        "API /api/v1/clusters": ("/api/v1/clusters", f'"name":"{mid}"'),
    }
    out: dict[str, Any] = {}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=60, follow_redirects=True
        ) as client:
            sign_in(client)
            for label, (path, check) in pages.items():
                out[label] = m = measure(client, capture, path, n, check)
                say(
                    f"{label}: median {m['ms_median']} ms, p90 {m['ms_p90']} ms, {m['sql_statements']} statements"
                )
        out["fleet data only (fleet_data.fleet: the queries, no HTML)"] = data_only(svc, n)
    finally:
        server.should_exit = True
    return out


def data_only(svc: Any, n: int) -> dict[str, Any]:
    from pgharbor.web.pages.fleet_data import fleet

    fleet(svc.catalog)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        rows = fleet(svc.catalog).rows
        times.append(time.perf_counter() - t0)
    assert len(rows) > 0
    return {
        "requests": n,
        "ms_median": round(1000 * statistics.median(times), 1),
        "ms_p90": round(1000 * pct(times, 0.9), 1),
        "rows": len(rows),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--wal", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=9, help="timed requests per page")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "dashboard.json"))
    args = ap.parse_args()
    rerun = as_postgres(__file__, sys.argv[1:], args.out, "pgharbor-dashbench-")
    if rerun is not None:
        return rerun
    base = work_folder("pgharbor-dashbench-")
    srv = catalog_server(base)
    out: dict[str, Any] = {"clusters": args.clusters, "wal_rows": args.wal}
    try:
        srv.sql("CREATE DATABASE pgharbor")
        url = f"postgresql://postgres@/pgharbor?host={srv.sockdir}&port={srv.port}"
        t0 = time.perf_counter()
        target = base / "target"
        target.mkdir()
        setup(url, srv, args.clusters, args.wal, target)
        add_backups(srv, args.wal, args.clusters)
        add_dashboard_rows(srv)
        out["setup_s"] = round(time.perf_counter() - t0, 1)
        for table in ("wal_copies", "backups", "jobs", "events", "check_states"):
            out[f"rows_{table}"] = int(srv.sql(f"SELECT count(*) FROM {table}", db="pgharbor"))
        say(f"catalog ready in {out['setup_s']} s")
        out["pages"] = run_bench(url, base, args.requests, args.clusters)
        write_results(out, args.out)
    finally:
        cleanup(srv, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
