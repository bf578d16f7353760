"""The pages that read (any scope): fleet, cluster, backup, targets, schedules, jobs, and
a job's page (refreshing until the job finishes)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from pgharbor.services import jobs as job_service
from pgharbor.services import schedules as schedule_service
from pgharbor.services.context import Services
from pgharbor.web.auth import Principal
from pgharbor.web.pages import cluster_data, fleet_data, ops_data
from pgharbor.web.pages.guard import run_page
from pgharbor.web.pages.render import page

router = APIRouter(include_in_schema=False)
FINISHED = ("done", "failed", "skipped", "missed")
# what a form's redirect may ask a page to say (a fixed set: no text from the URL)
FLASHES = {
    "queued": "Job queued: this page follows it until it finishes.",
    "held": "The backup is held: every expire keeps it.",
    "released": "The hold is released.",
    "paused": "The schedule is paused.",
    "resumed": "The schedule is resumed.",
}


def flash(request: Request) -> str | None:
    return FLASHES.get(request.query_params.get("flash", ""))


def services(request: Request) -> Services:
    svc: Services = request.app.state.ctx.services
    return svc


def probes(request: Request) -> ops_data.ProbeCache:
    found: ops_data.ProbeCache | None = getattr(request.app.state, "target_probes", None)
    if found is None:
        found = request.app.state.target_probes = ops_data.ProbeCache()
    return found


@router.get("/")
def fleet_page(request: Request, state: str = "") -> Response:
    """Every cluster; ``?state=CRITICAL`` (etc.): only the clusters in that state."""

    def build(who: Principal) -> Response:
        data = fleet_data.fleet(services(request).catalog)
        shown = [r for r in data.rows if r.state == state] if state else data.rows
        return page(
            request, "fleet.html", who=who, fleet=data, rows=shown, only=state, title="Fleet"
        )

    return run_page(request, build)


@router.get("/clusters/{name}")
def cluster_page(request: Request, name: str) -> Response:
    def build(who: Principal) -> Response:
        data = cluster_data.cluster_page(services(request), name)
        return page(request, "cluster.html", who=who, c=data, flash=flash(request), title=name)

    return run_page(request, build)


@router.get("/clusters/{name}/replication")
def replication_part(request: Request, name: str) -> Response:
    """Replication lag and slots, asked of the primary now: the part htmx loads into the
    cluster page, or a page of its own (without JavaScript)."""

    def build(who: Principal) -> Response:
        c = services(request).catalog.cluster(name)
        found = cluster_data.primary(c)
        template = "_replication.html" if request.headers.get("HX-Request") else "replication.html"
        return page(request, template, who=who, cluster=name, primary=found, title=name)

    return run_page(request, build)


@router.get("/clusters/{name}/backups/{backup_id}")
def backup_page(request: Request, name: str, backup_id: str) -> Response:
    def build(who: Principal) -> Response:
        data = ops_data.backup_page(services(request), name, backup_id)
        return page(request, "backup.html", who=who, b=data, flash=flash(request), title=backup_id)

    return run_page(request, build)


@router.get("/targets")
def targets_page(request: Request) -> Response:
    def build(who: Principal) -> Response:
        rows = ops_data.targets_page(services(request), probes(request))
        return page(request, "targets.html", who=who, targets=rows, title="Targets")

    return run_page(request, build)


@router.get("/schedules")
def schedules_page(request: Request) -> Response:
    def build(who: Principal) -> Response:
        found = schedule_service.list_schedules(services(request))
        return page(
            request,
            "schedules.html",
            who=who,
            schedules=found,
            flash=flash(request),
            title="Schedules",
        )

    return run_page(request, build)


@router.get("/jobs")
def jobs_page(request: Request, state: str = "", cluster: str = "") -> Response:
    def build(who: Principal) -> Response:
        found = job_service.list_jobs(
            services(request), cluster=cluster or None, state=state or None, limit=200
        )
        return page(
            request, "jobs.html", who=who, jobs=found, state=state, cluster=cluster, title="Jobs"
        )

    return run_page(request, build)


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: int, fragment: int = 0) -> Response:
    """Until the job finishes, htmx polls its status part every second (a meta refresh
    does it without JavaScript)."""

    def build(who: Principal) -> Response:
        job = job_service.show_job(services(request), job_id)
        template = "_job_status.html" if fragment else "job.html"
        return page(
            request,
            template,
            who=who,
            job=job,
            finished=job.state in FINISHED,
            flash=flash(request),
            title=f"Job {job_id}",
        )

    return run_page(request, build)
