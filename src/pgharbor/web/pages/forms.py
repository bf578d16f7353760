"""The forms that change something (operate scope, the session's CSRF token): trigger a
job, hold or release a backup, preview an expire then queue it, pause or resume a
schedule. Each calls the action the API calls (services/actions.py: the event log
records who did it); long work is only queued, then the browser follows its job page."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pgharbor.errors import UsageError
from pgharbor.services import actions
from pgharbor.web.auth import Principal
from pgharbor.web.pages.guard import Form, run_form, run_page
from pgharbor.web.pages.render import page
from pgharbor.web.pages.views import services

router = APIRouter(include_in_schema=False)
TRIGGERED = ("backup", "verify", "drill")  # expire: through its preview


def _q(text: str) -> str:
    return quote(text, safe="")


def _job(job_id: int) -> RedirectResponse:
    return RedirectResponse(f"/jobs/{job_id}?flash=queued", status_code=303)


@router.post("/clusters/{name}/trigger")
async def trigger(request: Request, name: str) -> Response:
    def act(who: Principal, form: Form) -> Response:
        kind = form.get("kind", "")
        if kind not in TRIGGERED:
            raise UsageError(f"cannot trigger {kind!r} here (one of {', '.join(TRIGGERED)})")
        return _job(actions.trigger(services(request), who, name, kind).id)

    return await run_form(request, "operate", act)


@router.get("/clusters/{name}/expire")
def expire_preview(request: Request, name: str) -> Response:
    """The dry run: what an expire would delete and keep, and the rule keeping each;
    the confirm button queues the real one."""

    def build(who: Principal) -> Response:
        run = actions.preview_expire(services(request), name)
        return page(
            request, "expire.html", who=who, cluster=name, preview=run, title=f"Expire {name}"
        )

    return run_page(request, build, "operate")


@router.post("/clusters/{name}/expire")
async def expire_confirm(request: Request, name: str) -> Response:
    def act(who: Principal, form: Form) -> Response:
        return _job(actions.trigger(services(request), who, name, "expire").id)

    return await run_form(request, "operate", act)


@router.post("/clusters/{name}/backups/{backup_id}/hold")
async def hold(request: Request, name: str, backup_id: str) -> Response:
    def act(who: Principal, form: Form) -> Response:
        reason = form.get("reason", "").strip() or f"held from the dashboard by {who.name}"
        until = form.get("until", "").strip() or None
        actions.hold(services(request), who, name, backup_id, reason, until)
        return RedirectResponse(
            f"/clusters/{_q(name)}/backups/{_q(backup_id)}?flash=held", status_code=303
        )

    return await run_form(request, "operate", act)


@router.post("/clusters/{name}/backups/{backup_id}/release")
async def release(request: Request, name: str, backup_id: str) -> Response:
    def act(who: Principal, form: Form) -> Response:
        actions.release(services(request), who, name, backup_id)
        return RedirectResponse(
            f"/clusters/{_q(name)}/backups/{_q(backup_id)}?flash=released", status_code=303
        )

    return await run_form(request, "operate", act)


@router.post("/schedules/{verb}")
async def schedule(request: Request, verb: str) -> Response:
    def act(who: Principal, form: Form) -> Response:
        scope = form.get("scope", "default")
        cluster = None if scope == "default" else scope
        kind = form.get("kind", "")
        if verb == "pause":
            actions.pause_schedule(services(request), who, cluster, kind)
        elif verb == "resume":
            actions.resume_schedule(services(request), who, cluster, kind)
        else:
            raise UsageError(f"no such schedule action {verb!r} (pause or resume)")
        return RedirectResponse(f"/schedules?flash={verb}d", status_code=303)

    return await run_form(request, "operate", act)
