#!/usr/bin/env python3
"""The scheduler at fleet scale: a PostgreSQL catalog with 1,000 clusters, 1 million WAL
rows and a month of job history; three processes tick every schedule every few seconds
(the tick `pgharbor serve` runs), then drain the queue by claiming concurrently.

Measures the time per tick and per claim, checks that each fire produced exactly one
job and that no job was claimed twice. verify's gap scan and `expire --dry-run` on this
catalog: bench/catalog_scale.py.

Usage (as root: re-runs itself as postgres), from the repository:
    .venv/bin/python bench/scheduler_scale.py [--clusters 1000] [--wal 1000000]
        [--seconds 150] [--poll 3] [--out bench/out/scheduler.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Server
from common import as_postgres, work_folder

SCHEDULES = {"backup": "0 */2 * * *", "verify": "*/5 * * * *", "drill": "* * * * *"}


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def setup(url: str, srv: Server, n_clusters: int, n_wal: int, target_root: Path) -> None:
    from pgharbor.catalog import db

    engine, cu = db.make_engine(url)
    db.migrate(engine, cu)
    per = max(1, n_wal // n_clusters)
    history_days = 30
    srv.sql(
        f"""
        INSERT INTO targets (id, name, url, active, created_at, modified_at)
          VALUES ('t1', 't1', 'file://{target_root}', true, now(), now());
        INSERT INTO clusters (id, name, idc, version, version_num, host, port, dsn,
              system_identifier, wal_segment_size, created_at, modified_at)
          SELECT 'c' || lpad(i::text, 5, '0'), 'c' || lpad(i::text, 5, '0'), 'dc1', '15.18',
                 150018, 'db' || i, 5432, 'host=/nonexistent', (7300000000000000000 + i)::text,
                 16777216, now() - interval '40 days', now()
          FROM generate_series(1, {n_clusters}) i;
        INSERT INTO placements (cluster_id, target_id, priority, active, created_at, modified_at)
          SELECT id, 't1', 1, true, now(), now() FROM clusters;
        INSERT INTO wal_copies (cluster_id, target_id, name, timeline, size, checksum,
              archived_at, status)
          SELECT c.id, 't1', '00000001' || upper(lpad(to_hex(s / 256), 8, '0')
                 || lpad(to_hex(s % 256), 8, '0')), 1, 16777216, 'sha256:x',
                 now() - (({per} - s) * interval '1 minute'), 'ok'
          FROM clusters c, generate_series(1, {per}) s;
        INSERT INTO schedules (scope, kind, cron, timezone, enabled, created_at, modified_at)
          VALUES {", ".join(f"('default', '{k}', '{v}', 'UTC', true, now() - interval '{history_days} days', now() - interval '{history_days} days')" for k, v in SCHEDULES.items())};
        -- a month of two-hourly backups as history
        INSERT INTO jobs (kind, cluster_id, schedule_id, fire_time, reason, state, node,
              token, attempts, queued_at, started_at, finished_at)
          SELECT 'backup', c.id, s.id, f, 'scheduled', 'done', 'old', 1, 1, f, f, f
          FROM clusters c, schedules s,
               generate_series(date_trunc('day', now()) - interval '{history_days} days',
                               date_trunc('day', now()) - interval '2 hours',
                               interval '2 hours') f
          WHERE s.kind = 'backup' AND extract(hour FROM f)::int % 2 = 0;
        -- the schedules were last changed three minutes ago (fires since then are due)
        UPDATE schedules SET modified_at = now() - interval '3 minutes';
        ANALYZE;
        """,
        db="pgharbor",
    )


def ticker(url: str, seconds: float, poll: float, queue: Any) -> None:
    from pgharbor.catalog.jobs import JobRepo
    from pgharbor.catalog.repo import open_catalog
    from pgharbor.scheduler.tick import tick

    repo = JobRepo(open_catalog(url, pooled=True))
    times, queued = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        res = tick(repo, timedelta(hours=1))
        times.append(time.perf_counter() - t0)
        queued += len(res.queued)
        assert not res.errors, res.errors[:3]
        time.sleep(poll)
    queue.put({"ticks": times, "queued": queued})


def claimer(url: str, queue: Any) -> None:
    from pgharbor.catalog.jobs import JobRepo
    from pgharbor.catalog.repo import open_catalog
    from pgharbor.scheduler.tick import KINDS

    repo = JobRepo(open_catalog(url, pooled=True))
    times, ids = [], []
    while True:
        t0 = time.perf_counter()
        job = repo.claim(f"n{os.getpid()}", 60, 10_000, KINDS)
        if job is None:
            break
        assert repo.finish(job.id, job.token, "done", None, None)
        times.append(time.perf_counter() - t0)
        ids.append(job.id)
    queue.put({"claims": times, "ids": ids})


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def write_results(out: dict[str, Any], path: str) -> None:
    os.makedirs(Path(path).parent, exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


def catalog_server(base: Path) -> Server:
    """A throwaway PostgreSQL server for the catalog, on a Unix socket only."""
    srv = Server(base / "catalog", base)
    srv.initdb()
    srv.own_settings()
    srv.configure(
        {"fsync": "off", "shared_buffers": "256MB", "max_connections": 50, "listen_addresses": ""}
    )
    srv.start()
    return srv


def cleanup(srv: Server, base: Path) -> None:
    srv.stop("immediate")
    if not os.environ.get("SCHEDBENCH_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--wal", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--poll", type=float, default=3)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "scheduler.json"))
    args = ap.parse_args()
    rerun = as_postgres(__file__, sys.argv[1:], args.out, "pgharbor-schedbench-")
    if rerun is not None:
        return rerun
    base = work_folder("pgharbor-schedbench-")
    srv = catalog_server(base)
    out: dict[str, Any] = {"clusters": args.clusters, "wal_rows": args.wal, "nodes": args.nodes}
    try:
        srv.sql("CREATE DATABASE pgharbor")
        url = f"postgresql://postgres@/pgharbor?host={srv.sockdir}&port={srv.port}"
        t0 = time.perf_counter()
        target = base / "target"
        target.mkdir()
        setup(url, srv, args.clusters, args.wal, target)
        out["setup_s"] = round(time.perf_counter() - t0, 1)
        out["history_jobs"] = int(srv.sql("SELECT count(*) FROM jobs", db="pgharbor"))
        say(f"catalog ready in {out['setup_s']} s ({out['history_jobs']} jobs of history)")

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [
            ctx.Process(target=ticker, args=(url, args.seconds, args.poll, q))
            for _ in range(args.nodes)
        ]
        for p in procs:
            p.start()
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
        ticks = [t for r in results for t in r["ticks"]]
        out["ticks"] = len(ticks)
        out["tick_ms_median"] = round(1000 * statistics.median(ticks), 1)
        out["tick_ms_p95"] = round(1000 * pct(ticks, 0.95), 1)
        out["tick_ms_max"] = round(1000 * max(ticks), 1)
        dup = srv.sql(
            "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE schedule_id IS NOT NULL "
            "GROUP BY schedule_id, cluster_id, fire_time HAVING count(*) > 1) d",
            db="pgharbor",
        )
        out["fires_with_more_than_one_job"] = int(dup)
        per_fire = srv.sql(
            "SELECT s.kind, count(DISTINCT j.fire_time), count(*) FROM jobs j "
            "JOIN schedules s ON s.id = j.schedule_id WHERE j.node IS DISTINCT FROM 'old' "
            "GROUP BY s.kind ORDER BY 1",
            db="pgharbor",
        )
        out["fires"] = {}
        for line in per_fire.splitlines():
            kind, fires, rows = line.split("|")
            out["fires"][kind] = {"fire_times": int(fires), "rows": int(rows)}
            # every fire time has one row per cluster: no fire lost, none doubled
            assert int(rows) == int(fires) * args.clusters, (kind, fires, rows)
        out["queued_by_ticks"] = sum(r["queued"] for r in results)
        say(
            f"ticks: {out['ticks']}, median {out['tick_ms_median']} ms, p95 {out['tick_ms_p95']} ms"
        )

        q2 = ctx.Queue()
        procs = [ctx.Process(target=claimer, args=(url, q2)) for _ in range(args.nodes)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        claims = [q2.get() for _ in procs]
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        ids = [i for r in claims for i in r["ids"]]
        all_claims = [t for r in claims for t in r["claims"]]
        out["claimed"] = len(ids)
        out["claimed_twice"] = len(ids) - len(set(ids))
        out["claim_finish_ms_median"] = (
            round(1000 * statistics.median(all_claims), 1) if all_claims else None
        )
        out["claims_per_s"] = round(len(ids) / wall, 1) if wall else None
        say(
            f"claims: {len(ids)} in {wall:.1f} s by {args.nodes} processes, none twice: {out['claimed_twice'] == 0}"
        )

        explain = srv.sql(
            "EXPLAIN (ANALYZE, FORMAT TEXT) SELECT schedule_id, cluster_id, max(fire_time) "
            "FROM jobs WHERE schedule_id IS NOT NULL GROUP BY schedule_id, cluster_id",
            db="pgharbor",
        )
        out["last_fires_plan"] = explain.splitlines()[-1]
        write_results(out, args.out)
    finally:
        cleanup(srv, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
