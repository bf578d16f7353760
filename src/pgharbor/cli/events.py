"""events: state changes worth attention (checks, failed jobs, refused retention)."""

from __future__ import annotations

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, fmt_time
from pgharbor.services import events as events_service


@click.command("events")
@click.argument("cluster", required=False)
@click.option(
    "--since", metavar="TS", help="From a timestamp (with a time zone) or 30m, 2h, 7d ago."
)
@click.option("--limit", default=1000, show_default=True, help="At most this many (the newest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def events(
    app: AppContext, cluster: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """The events of CLUSTER (or the fleet), oldest first."""
    found = events_service.list_events(app.svc, cluster, since, limit)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no events")
    for e in found:
        change = f"{e.previous} -> {e.state}" if e.previous else e.state
        click.echo(
            f"{fmt_time(e.at)}  {e.cluster or '-'}  {e.source} {e.kind}  {change}: {e.message}"
            + (f" (by {e.actor})" if e.actor else "")
        )


def register(root: click.Group) -> None:
    root.add_command(events)
