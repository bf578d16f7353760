#!/usr/bin/env python3
"""The catalog queries of verification and retention at fleet scale: the catalog of
bench/scheduler_scale.py (1,000 clusters, 1 million WAL rows, a month of job history)
plus 12 backups per cluster (one held, with a copy row each) and a retention default.

Times, per cluster and for the whole fleet's sweep:
- the gap scan of ``verify`` (services.verification._scan: the cluster's WAL rows, its
  backups, the expected set and what it lacks; the catalog part of a verify run),
- ``expire --dry-run`` (services.retention.expire(..., dry_run=True): backup.expire
  make_plan over backups, holds, policy, gaps and WAL rows),
and checks the answers: the one segment removed from cluster c00007 is the only gap
found (lost: archived long ago), and every plan deletes the same six backups. Then shows EXPLAIN ANALYZE of every statement these two send (captured from
the engine as they run, for one cluster).

Usage (as root: re-runs itself as postgres), from the repository:
    .venv/bin/python bench/catalog_scale.py [--clusters 1000] [--wal 1000000]
        [--sample 1000] [--tickers 0] [--poll 3] [--out bench/out/catalog.json]

With ``--tickers 3`` three processes tick every schedule every ``--poll`` seconds (the
tick ``pgharbor serve`` runs, as in scheduler_scale.py) while the queries are timed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Server
from common import as_postgres, work_folder
from scheduler_scale import catalog_server, cleanup, pct, say, setup, ticker, write_results

BACKUPS = 12  # per cluster
HELD = 2  # the second oldest backup of each cluster is held


def add_backups(srv: Server, n_wal: int, n_clusters: int) -> None:
    """12 backups per cluster spread over its WAL (backup i starts at segment i*step),
    each with an ok copy on t1; one held; the fleet keeps the last 5 (min 2)."""
    per = max(1, n_wal // n_clusters)
    step = max(1, per // (BACKUPS + 1))
    # segment s: name 00000001 + hi(s / 256) + lo(s % 256), LSN hi/(lo << 24), archived
    # (per - s) minutes ago (as in scheduler_scale.setup)
    srv.sql(
        f"""
        INSERT INTO backups (id, cluster_id, status, label, timeline, start_lsn, stop_lsn,
              start_time, stop_time, wal_start, wal_stop, pg_version_num, host,
              created_at, modified_at)
          SELECT c.id || '-b' || lpad(i::text, 2, '0'), c.id, 'ok', 'bench', 1,
                 upper(to_hex(s / 256) || '/' || to_hex((s % 256) << 24)),
                 upper(to_hex((s + 1) / 256) || '/' || to_hex(((s + 1) % 256) << 24)),
                 now() - (({per} - s) * interval '1 minute'),
                 now() - (({per} - s - 1) * interval '1 minute'),
                 '00000001' || upper(lpad(to_hex(s / 256), 8, '0')
                   || lpad(to_hex(s % 256), 8, '0')),
                 '00000001' || upper(lpad(to_hex((s + 1) / 256), 8, '0')
                   || lpad(to_hex((s + 1) % 256), 8, '0')),
                 150018, 'bench', now(), now()
          FROM clusters c, generate_series(1, {BACKUPS}) i, LATERAL (SELECT i * {step} AS s) x;
        INSERT INTO backup_copies (backup_id, target_id, stored_bytes, status)
          SELECT id, 't1', 1048576, 'ok' FROM backups;
        INSERT INTO backup_holds (backup_id, until, reason, created_at)
          SELECT c.id || '-b' || lpad('{HELD}', 2, '0'), NULL, 'bench', now() FROM clusters c;
        INSERT INTO retention_policies (scope, cluster_id, keep_last, recovery_window_s,
              min_backups, modified_at)
          VALUES ('default', NULL, 5, NULL, 2, now());
        ANALYZE;
        """,
        db="pgharbor",
    )


GAP_CLUSTER, GAP_SEGMENT = "c00007", 0x1F5  # one segment gone: its scan must find it


def remove_segment(srv: Server) -> None:
    srv.sql(
        f"DELETE FROM wal_copies WHERE cluster_id = '{GAP_CLUSTER}' "
        f"AND name = '00000001{GAP_SEGMENT // 256:08X}{GAP_SEGMENT % 256:08X}'",
        db="pgharbor",
    )


class Capture:
    """The statements an engine sends while ``on`` (SQL text, parameters)."""

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.on, self.seen = False, []  # type: ignore[var-annotated]
        sa.event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if self.on and statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, params))


def explain(engine: Any, captured: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    out, done = [], set()
    with engine.connect() as conn:
        for statement, params in captured:
            if statement in done:
                continue
            done.add(statement)
            rows = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + statement, params
            ).all()
            plan = [r[0] for r in rows]
            conn.rollback()  # the same statement with no index to use: what they buy
            for kind in ("indexscan", "bitmapscan", "indexonlyscan"):
                conn.exec_driver_sql(f"SET LOCAL enable_{kind} = off")
            bare = conn.exec_driver_sql("EXPLAIN ANALYZE " + statement, params).all()
            conn.rollback()
            out.append(
                {
                    "sql": " ".join(statement.split())[:160],
                    "plan": [p for p in plan if "Scan" in p or "Join" in p or "Loop" in p],
                    "time": plan[-1].strip(),
                    "time_without_indexes": bare[-1][0].strip(),
                }
            )
    return out


def timed(fn: Any, names: list[str]) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for name in names:
        t0 = time.perf_counter()
        results.append(fn(name))
        times.append(time.perf_counter() - t0)
    return times, results


def summary(times: list[float]) -> dict[str, float]:
    return {
        "clusters": len(times),
        "ms_median": round(1000 * statistics.median(times), 1),
        "ms_p95": round(1000 * pct(times, 0.95), 1),
        "ms_max": round(1000 * max(times), 1),
        "sweep_s": round(sum(times), 1),
    }


def measure(url: str, sample: int) -> dict[str, Any]:
    from pgharbor.services import verification
    from pgharbor.services.context import Services
    from pgharbor.services.retention import expire
    from pgharbor.settings import Settings

    svc = Services(Settings(catalog=url), pooled=True)
    names = [c.name for c in svc.catalog.clusters()][:sample]
    cap = Capture(svc.catalog.engine)

    def scan(name: str) -> Any:
        cluster = verification._active(svc, name)
        r = verification.VerificationResult(name)
        return verification._scan(svc, cluster, r, datetime.now(UTC)), r

    def dry_run(name: str) -> Any:
        return expire(svc, name, dry_run=True).runs[0]

    out: dict[str, Any] = {}
    scan(names[0])  # warm the pool and the caches
    t0 = time.perf_counter()
    times, scans = timed(scan, names)
    out["verify_scan"] = summary(times)
    out["verify_scan"]["wall_s"] = round(time.perf_counter() - t0, 1)
    gaps = {
        r.cluster: [(g.timeline, g.first, g.last, g.state) for g in s.runs]
        for s, r in scans
        if s.runs or s.lag
    }
    out["verify_scan"]["gaps_found"] = gaps
    if GAP_CLUSTER in names:  # the removed segment, and nothing else, is a gap
        assert gaps == {GAP_CLUSTER: [(1, GAP_SEGMENT, GAP_SEGMENT, "lost")]}, gaps
    out["verify_scan"]["problems"] = sum(len(r.problems) for _, r in scans)
    first = {t: list(v) for t, v in scans[0][0].expected.items()}
    out["verify_scan"]["expected_segnos_first_cluster"] = first
    t0 = time.perf_counter()
    times, runs = timed(dry_run, names)
    out["expire_dry_run"] = summary(times)
    out["expire_dry_run"]["wall_s"] = round(time.perf_counter() - t0, 1)
    verdicts = {tuple(v.id.split("-b")[1] for v in r.backups if not v.keep) for r in runs}
    out["expire_dry_run"]["distinct_delete_sets"] = sorted(map(list, verdicts))
    assert verdicts == {("01", "03", "04", "05", "06", "07")}, verdicts  # keep 5, and the held
    out["expire_dry_run"]["wal_delete_per_cluster"] = sorted({len(r.wal_delete) for r in runs})
    out["expire_dry_run"]["refused_or_guarded"] = sum(bool(r.refusals or r.guards) for r in runs)

    cap.on = True
    scan(names[len(names) // 2])
    verify_sql = list(cap.seen)
    cap.seen.clear()
    dry_run(names[len(names) // 2])
    expire_sql = list(cap.seen)
    cap.on = False
    out["verify_scan"]["statements"] = len(verify_sql)
    out["expire_dry_run"]["statements"] = len(expire_sql)
    out["plans"] = explain(svc.catalog.engine, verify_sql + expire_sql)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--wal", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=1000, help="clusters timed (all: 1000)")
    ap.add_argument(
        "--tickers", type=int, default=0, help="processes ticking every schedule meanwhile"
    )
    ap.add_argument("--poll", type=float, default=3, help="seconds between their ticks")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "catalog.json"))
    args = ap.parse_args()
    rerun = as_postgres(__file__, sys.argv[1:], args.out, "pgharbor-catbench-")
    if rerun is not None:
        return rerun
    base = work_folder("pgharbor-catbench-")
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
        remove_segment(srv)
        out["setup_s"] = round(time.perf_counter() - t0, 1)
        out["backups"] = int(srv.sql("SELECT count(*) FROM backups", db="pgharbor"))
        say(f"catalog ready in {out['setup_s']} s ({out['backups']} backups)")
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [
            ctx.Process(target=ticker, args=(url, 3600, args.poll, q)) for _ in range(args.tickers)
        ]
        for p in procs:
            p.start()
        try:
            out["tickers"] = args.tickers
            out.update(measure(url, args.sample))
        finally:
            for p in procs:
                p.terminate()
                p.join()
        if procs:
            out["jobs_recorded_meanwhile"] = int(
                srv.sql(
                    "SELECT count(*) FROM jobs WHERE node IS DISTINCT FROM 'old'", db="pgharbor"
                )
            )
            out["fires_with_more_than_one_job"] = int(
                srv.sql(
                    "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE schedule_id IS NOT NULL "
                    "GROUP BY schedule_id, cluster_id, fire_time HAVING count(*) > 1) d",
                    db="pgharbor",
                )
            )
        for k in ("verify_scan", "expire_dry_run"):
            m = out[k]
            say(f"{k}: median {m['ms_median']} ms, p95 {m['ms_p95']} ms, sweep {m['sweep_s']} s")
        write_results(out, args.out)
    finally:
        cleanup(srv, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
