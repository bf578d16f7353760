"""schedule set / list / trigger, job list / show, serve."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_time
from pgharbor.services import jobs, schedules, serve

if TYPE_CHECKING:
    from pgharbor.services.jobs import JobView

KIND = click.Choice(schedules.KINDS)


@click.group("schedule")
def schedule_group() -> None:
    """When each job kind runs: the fleet default and per-cluster overrides."""


@schedule_group.command("set")
@click.argument("cluster", required=False)
@click.argument("kind", required=False)
@click.argument("cron", required=False)
@click.option("--default", "default", is_flag=True, help="The fleet default.")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def schedule_set(
    app: AppContext,
    cluster: str | None,
    kind: str | None,
    cron: str | None,
    default: bool,
    tz: str,
    as_json: bool,
) -> None:
    """Set (CLUSTER|--default) KIND CRON|off: standard 5-field cron or @daily-style."""
    args = [a for a in (cluster, kind, cron) if a is not None]
    if len(args) != (2 if default else 3):
        raise click.UsageError("usage: schedule set (CLUSTER|--default) KIND CRON|off")
    if default:
        cluster, kind, cron = None, args[0], args[1]
    assert kind is not None and cron is not None
    view = schedules.set_schedule(app.svc, cluster, kind, cron, timezone=tz)
    if as_json:
        emit_json(view)
        return
    nxt = ", ".join(fmt_time(t) for t in view.next_fires) or "never (off)"
    click.echo(f"{view.scope} {view.kind}: {view.cron} ({view.timezone}); next: {nxt}")


@schedule_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def schedule_list(app: AppContext, as_json: bool) -> None:
    """Every schedule with its next three fire times."""
    res = schedules.list_schedules(app.svc)
    if as_json:
        emit_json(res)
        return
    rows = [
        (
            s.scope,
            s.kind,
            s.cron,
            s.timezone,
            " ".join(fmt_time(t) for t in s.next_fires) if s.enabled else "off",
        )
        for s in res.schedules
    ]
    emit_table(("scope", "kind", "cron", "timezone", "next fires (UTC)"), rows)


@schedule_group.command("trigger")
@click.argument("cluster")
@click.argument("kind", type=KIND)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def schedule_trigger(app: AppContext, cluster: str, kind: str, as_json: bool) -> None:
    """Queue a run of KIND for CLUSTER now (the schedule does not move)."""
    job = schedules.trigger(app.svc, cluster, kind)
    if as_json:
        emit_json(job)
    else:
        click.echo(f"job {job.id}: {job.kind} {job.cluster} queued")


@click.group("job")
def job_group() -> None:
    """What the scheduler ran and runs."""


@job_group.command("list")
@click.option("--cluster", help="Only this cluster.")
@click.option("--state", type=click.Choice(jobs.STATES), help="Only jobs in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def job_list(app: AppContext, cluster: str | None, state: str | None, as_json: bool) -> None:
    """The newest jobs first."""
    found = jobs.list_jobs(app.svc, cluster=cluster, state=state)
    if as_json:
        emit_json(found)
        return
    rows = [
        (
            j.id,
            j.kind,
            j.cluster,
            j.reason,
            j.state,
            j.node or "",
            fmt_time(j.queued_at),
            fmt_time(j.finished_at),
            (j.error or "")[:60],
        )
        for j in found
    ]
    emit_table(
        ("id", "kind", "cluster", "reason", "state", "node", "queued", "finished", "error"), rows
    )


@job_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def job_show(app: AppContext, job_id: int, as_json: bool) -> None:
    """One job with its result."""
    _echo_job(jobs.show_job(app.svc, job_id), as_json)


def _echo_job(j: JobView, as_json: bool) -> None:
    if as_json:
        emit_json(j)
        return
    import json

    click.echo(f"job {j.id}: {j.kind} {j.cluster} ({j.reason}) {j.state}")
    for label, value in (
        ("node", j.node or ""),
        ("fire time", fmt_time(j.fire_time) if j.fire_time else ""),
        ("queued", fmt_time(j.queued_at)),
        ("started", fmt_time(j.started_at)),
        ("finished", fmt_time(j.finished_at)),
        ("attempts", str(j.attempts)),
        ("error", j.error or ""),
    ):
        if value:
            click.echo(f"  {label + ':':<11}{value}")
    if j.result is not None:
        click.echo("  result:")
        for line in json.dumps(j.result, indent=2).splitlines():
            click.echo(f"    {line}")


@click.command("serve")
@click.option(
    "--listen",
    default=serve.DEFAULT_LISTEN,
    show_default=True,
    help="HOST:PORT of the web server (/health, /metrics, /api/v1, the dashboard).",
)
@click.option("--node", help="This node's name (default: the host name).")
@click.option("--max-jobs", type=int, help="Jobs this node runs at once (scheduler_max_jobs).")
@click.option(
    "--tls-cert", type=click.Path(), help="PEM certificate (chain) for https; with --tls-key."
)
@click.option("--tls-key", type=click.Path(), help="PEM private key of --tls-cert.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@pass_app
def serve_cmd(
    app: AppContext,
    listen: str,
    node: str | None,
    max_jobs: int | None,
    tls_cert: str | None,
    tls_key: str | None,
    verbose: bool,
) -> None:
    """Run a scheduler node: schedules, jobs, the web API and dashboard, /health and
    /metrics (until SIGTERM). Off loopback only with --tls-cert/--tls-key."""
    rep = serve.run_node(
        app.svc,
        listen=listen,
        node=node,
        max_jobs=max_jobs,
        verbose=verbose,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    back = f", {len(rep.handed_back)} handed back" if rep.handed_back else ""
    click.echo(
        f"node {rep.node} stopped: {rep.jobs_done} job(s) done, {rep.jobs_failed} failed{back}",
        err=True,
    )


def register(root: click.Group) -> None:
    root.add_command(schedule_group)
    root.add_command(job_group)
    root.add_command(serve_cmd)
