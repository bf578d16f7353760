"""The scheduler's catalog side on SQLite and a real PostgreSQL: one job per fire however
many nodes tick, skipped and missed fires, claims that respect the per-cluster and
fleet-wide limits, fencing tokens, expired leases, and the one-node rule of SQLite."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import sqlalchemy as sa

from pgharbor.catalog.jobs import JobRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.catalog.schema import clusters, jobs, schedules
from pgharbor.errors import Conflict, UsageError
from pgharbor.scheduler.tick import KINDS, tick
from pgharbor.services import jobs as job_service
from pgharbor.services import schedules as sched_service
from pgharbor.services.context import Services
from pgharbor.settings import Settings
from tests.fixtures.catalogs import add_test_cluster, catalog_url, init_catalog  # noqa: F401

pytestmark = pytest.mark.integration

GRACE = timedelta(seconds=90)


@pytest.fixture
def cat(catalog_url: str) -> Catalog:  # noqa: F811
    return init_catalog(catalog_url)


def _svc(cat: Catalog) -> Services:
    svc = Services(Settings(catalog=str(cat.url.sqlalchemy_url)))
    svc._catalog = cat
    return svc


def _age_schedules(cat: Catalog, minutes: int) -> None:
    """As if the schedules had been set (and the clusters added) ``minutes`` ago."""
    then = JobRepo(cat).db_now() - timedelta(minutes=minutes)
    with cat.engine.begin() as conn:
        conn.execute(schedules.update().values(modified_at=then))
        conn.execute(clusters.update().values(created_at=then))


def _fires(cat: Catalog) -> list[tuple[str, str]]:
    q = sa.select(jobs.c.kind, jobs.c.state).where(jobs.c.schedule_id.is_not(None))
    with cat.engine.connect() as conn:
        return sorted((r[0], r[1]) for r in conn.execute(q))


def test_schedule_set_list_and_refusals(cat: Catalog) -> None:
    add_test_cluster(cat, "c1")
    svc = _svc(cat)
    v = sched_service.set_schedule(svc, None, "backup", "0 */2 * * *")
    assert (v.scope, v.cron, v.enabled, len(v.next_fires)) == ("default", "0 */2 * * *", True, 3)
    assert all(t.hour % 2 == 0 and t.minute == 0 for t in v.next_fires)
    off = sched_service.set_schedule(svc, "c1", "backup", "off")
    assert (off.scope, off.enabled, off.next_fires) == ("c1", False, [])
    berlin = sched_service.set_schedule(svc, "c1", "expire", "@daily", timezone="Europe/Berlin")
    assert {t.hour for t in berlin.next_fires} <= {22, 23}  # midnight in Berlin, in UTC
    listed = sched_service.list_schedules(svc).schedules
    assert [(s.scope, s.kind) for s in listed] == [
        ("default", "backup"),
        ("c1", "backup"),
        ("c1", "expire"),
    ]
    with pytest.raises(UsageError, match="6 fields"):
        sched_service.set_schedule(svc, None, "backup", "0 0 2 * * *")
    with pytest.raises(UsageError, match="unknown job kind"):
        sched_service.set_schedule(svc, None, "vacuum", "@daily")
    with pytest.raises(UsageError, match="unknown time zone"):
        sched_service.set_schedule(svc, None, "backup", "@daily", timezone="Nowhere/City")
    with pytest.raises(UsageError, match="unknown job state"):
        job_service.list_jobs(svc, state="sleeping")


def test_each_fire_is_one_job_however_many_nodes_tick(cat: Catalog) -> None:
    add_test_cluster(cat, "c1")
    add_test_cluster(cat, "c2", port=5433)
    svc = _svc(cat)
    sched_service.set_schedule(svc, None, "drill", "* * * * *")
    sched_service.set_schedule(svc, "c2", "drill", "off")
    _age_schedules(cat, 10)
    nodes = [JobRepo(cat) for _ in range(3)]
    results = [tick(n, GRACE) for n in nodes]
    assert len(results[0].queued) == 1 and results[0].missed >= 8
    assert all(not r.queued and not r.missed for r in results[1:])
    fires = _fires(cat)
    assert fires.count(("drill", "queued")) == 1
    assert fires.count(("drill", "missed")) == results[0].missed
    with cat.engine.connect() as conn:
        per_fire = conn.execute(
            sa.select(jobs.c.fire_time, sa.func.count()).group_by(jobs.c.fire_time)
        ).all()
        clusters = {r[0] for r in conn.execute(sa.select(jobs.c.cluster_id).distinct())}
    assert all(n == 1 for _, n in per_fire)
    assert clusters == {cat.cluster("c1").id}  # c2 turned its drills off


def test_a_fire_while_the_previous_run_is_going_is_skipped(cat: Catalog) -> None:
    add_test_cluster(cat, "c1")
    svc = _svc(cat)
    sched_service.set_schedule(svc, None, "backup", "* * * * *")
    job = sched_service.trigger(svc, "c1", "backup")
    assert (job.reason, job.state) == ("requested", "queued")
    _age_schedules(cat, 1)
    res = tick(JobRepo(cat), GRACE)
    assert (res.queued, res.skipped) == ([], 1)
    assert _fires(cat) == [("backup", "skipped")]


def test_claims_respect_the_limits_and_tokens_fence(cat: Catalog) -> None:
    c1 = add_test_cluster(cat, "c1")
    c2 = add_test_cluster(cat, "c2", port=5433)
    repo = JobRepo(cat)
    b1, e1, v1 = (repo.request(c1, k) for k in ("backup", "expire", "verify"))
    b2 = repo.request(c2, "backup")
    first = repo.claim("n1", 30, max_backups=1, kinds=KINDS)
    assert first is not None and (first.id, first.state, first.node) == (b1, "running", "n1")
    # c1's expire waits for its backup; c2's backup waits for the fleet limit of 1
    second = repo.claim("n2", 30, max_backups=1, kinds=KINDS)
    assert second is not None and second.id == v1
    assert repo.claim("n2", 30, max_backups=1, kinds=KINDS) is None
    assert repo.claim("n2", 30, max_backups=2, kinds=KINDS).id == b2  # type: ignore[union-attr]
    assert repo.finish(first.id, first.token, "done", {"x": 1}, None)
    third = repo.claim("n2", 30, max_backups=2, kinds=KINDS)
    assert third is not None and third.id == e1
    # a lease that ran out: the job is queued again (retry), and the old holder's
    # token no longer commits anything
    with cat.engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id == third.id)
            .values(lease_until=repo.db_now() - timedelta(seconds=1))
        )
    assert repo.requeue_expired(max_attempts=3) == [third.id]
    again = repo.claim("n1", 30, max_backups=2, kinds=KINDS)
    assert again is not None and (again.id, again.reason, again.attempts) == (e1, "retry", 2)
    assert again.token > third.token
    assert not repo.heartbeat(third.id, third.token, 30)
    assert not repo.finish(third.id, third.token, "done", None, None)
    assert repo.heartbeat(again.id, again.token, 30)
    assert repo.finish(again.id, again.token, "failed", None, "boom")
    shown = repo.get(e1)
    assert (shown.state, shown.node, shown.error) == ("failed", "n1", "boom")
    assert repo.get(b1).result == {"x": 1}


def test_a_job_whose_node_keeps_dying_fails(cat: Catalog) -> None:
    c1 = add_test_cluster(cat, "c1")
    repo = JobRepo(cat)
    job_id = repo.request(c1, "drill")
    for _ in range(2):
        job = repo.claim("n1", 0.001, max_backups=1, kinds=KINDS)
        assert job is not None
        with cat.engine.begin() as conn:
            conn.execute(jobs.update().values(lease_until=repo.db_now() - timedelta(seconds=1)))
        repo.requeue_expired(max_attempts=2)
    j = repo.get(job_id)
    assert j.state == "failed" and "lease expired" in (j.error or "")


def test_sqlite_allows_one_node(cat: Catalog) -> None:
    repo = JobRepo(cat)
    me = os.getpid()
    repo.join("a", "host1", me, "1", 30, lambda host, pid: True)
    if cat.url.kind == "sqlite":
        with pytest.raises(Conflict, match="SQLite allows one node"):
            repo.join("b", "host1", me + 1, "1", 30, lambda host, pid: True)
        repo.join("b", "host1", me + 1, "1", 30, lambda host, pid: False)  # a was gone
    else:
        repo.join("b", "host1", me + 1, "1", 30, lambda host, pid: True)
        with pytest.raises(Conflict, match="named b is already running"):
            repo.join("b", "host1", me + 2, "1", 30, lambda host, pid: True)
    assert repo.node_heartbeat("b")
    repo.leave("b")
    assert not repo.node_heartbeat("b")
