"""The API's reading routes: any scope. Each returns what the matching CLI command's
``--json`` prints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from pgharbor.services import (
    clusters,
    drills,
    events,
    inventory,
    jobs,
    placements,
    restores,
    schedules,
    status,
    targets,
    verification,
)
from pgharbor.web.api.common import answer, svc
from pgharbor.web.auth import Caller

router = APIRouter(tags=["read"])


@router.get("/whoami", summary="The caller: name, kind (token or user) and scope")
def whoami(who: Caller) -> JSONResponse:
    return answer(who)


@router.get("/clusters", summary="Every cluster (pgharbor cluster list --json)")
def cluster_list(request: Request) -> JSONResponse:
    return answer(clusters.list_clusters(svc(request)))


@router.get("/clusters/{cluster}", summary="One cluster with its placements")
def cluster_show(request: Request, cluster: str) -> JSONResponse:
    view = clusters.show(svc(request), cluster)
    return answer({**view.cluster.as_dict(), "placements": view.placements})


@router.get("/status", summary="Every cluster's status (pgharbor status --json)")
def fleet_status(request: Request) -> JSONResponse:
    return answer(status.status(svc(request)))


@router.get(
    "/clusters/{cluster}/status",
    summary="A cluster's WAL status: last archived, missing copies, open gaps, backups, "
    "recoverable windows, restore points, last drill",
)
def cluster_status(request: Request, cluster: str) -> JSONResponse:
    return answer(status.cluster_status(svc(request), cluster))


@router.get("/clusters/{cluster}/windows", summary="The recoverable window of each timeline")
def cluster_windows(request: Request, cluster: str) -> JSONResponse:
    return answer(status.cluster_status(svc(request), cluster).windows)


@router.get("/clusters/{cluster}/gaps", summary="WAL gaps (pgharbor wal gaps --json)")
def cluster_gaps(
    request: Request, cluster: str, everything: bool = Query(False, alias="all")
) -> JSONResponse:
    return answer(verification.list_gaps(svc(request), cluster, everything=everything))


@router.get("/clusters/{cluster}/placements", summary="The targets a cluster ships to")
def cluster_placements(request: Request, cluster: str) -> JSONResponse:
    return answer(placements.list_placements(svc(request), cluster))


@router.get(
    "/clusters/{cluster}/backups",
    summary="A cluster's backups, each with its hold and the retention rules that keep it",
)
def backup_list(request: Request, cluster: str) -> JSONResponse:
    return answer(inventory.backup_inventory(svc(request), cluster))


@router.get("/clusters/{cluster}/backups/{backup_id}", summary="One backup, with its hold")
def backup_show(request: Request, cluster: str, backup_id: str) -> JSONResponse:
    return answer(inventory.backup_entry(svc(request), cluster, backup_id))


@router.get("/clusters/{cluster}/restore-points", summary="Named restore points")
def restore_points(request: Request, cluster: str) -> JSONResponse:
    return answer(restores.list_points(svc(request), cluster))


@router.get("/clusters/{cluster}/drills", summary="A cluster's restore drills, newest first")
def cluster_drills(request: Request, cluster: str, limit: int = Query(50, ge=1)) -> JSONResponse:
    return answer(drills.list_drills(svc(request), cluster, limit).drills)


@router.get("/drills", summary="Each cluster's latest drill and last passed drill")
def fleet_drills(request: Request) -> JSONResponse:
    return answer(drills.newest_per_cluster(svc(request)))


@router.get("/targets", summary="Every target (URLs without credentials)")
def target_list(request: Request) -> JSONResponse:
    return answer(targets.list_targets(svc(request)))


@router.get("/schedules", summary="Schedules and their next fire times")
def schedule_list(request: Request) -> JSONResponse:
    return answer(schedules.list_schedules(svc(request)))


@router.get("/jobs", summary="Jobs, newest first")
def job_list(
    request: Request,
    cluster: str | None = None,
    state: str | None = None,
    limit: int = Query(200, ge=1, le=10_000),
) -> JSONResponse:
    return answer(jobs.list_jobs(svc(request), cluster=cluster, state=state, limit=limit))


@router.get("/jobs/{job_id}", summary="One job")
def job_show(request: Request, job_id: int) -> JSONResponse:
    return answer(jobs.show_job(svc(request), job_id))


@router.get("/events", summary="Events (checks, jobs, and the audit trail), oldest first")
def event_list(
    request: Request,
    cluster: str | None = None,
    since: str | None = None,
    limit: int = Query(1000, ge=1, le=100_000),
) -> JSONResponse:
    return answer(events.list_events(svc(request), cluster, since, limit))


def _check(request: Request, service: str, cluster: str | None, window: float) -> Any:
    from pgharbor.monitor.registry import run_check
    from pgharbor.render.output import check_json

    report = run_check(
        svc(request), service, cluster, fleet=cluster is None, window=window, record=False
    )
    return check_json(report)


@router.get(
    "/checks/{service}/{cluster}",
    summary="A check of one cluster (pgharbor check SERVICE CLUSTER --json)",
)
def check_one(
    request: Request, service: str, cluster: str, window: float = Query(3600.0, gt=0)
) -> JSONResponse:
    return JSONResponse(_check(request, service, cluster, window))


@router.get("/checks/{service}", summary="A check of every cluster (pgharbor check --all)")
def check_fleet(
    request: Request, service: str, window: float = Query(3600.0, gt=0)
) -> JSONResponse:
    return JSONResponse(_check(request, service, None, window))
