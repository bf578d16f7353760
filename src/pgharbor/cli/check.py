"""check: a Nagios/Icinga plugin (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

from __future__ import annotations

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.errors import PgharborError
from pgharbor.monitor.thresholds import number
from pgharbor.render import nagios
from pgharbor.render.output import check_json, emit_json

UNKNOWN = 3


@click.command("check")
@click.argument("service", metavar="SERVICE")
@click.argument("cluster", required=False)
@click.option("--all", "fleet", is_flag=True, help="Every cluster: one line each, worst wins.")
@click.option("-w", "--warning", "warn", metavar="RANGE", help="Warning range(s).")
@click.option("-c", "--critical", "crit", metavar="RANGE", help="Critical range(s).")
@click.option(
    "--window", default="1h", show_default=True, help="timeline: how recent counts as growing."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def check(
    app: AppContext,
    service: str,
    cluster: str | None,
    fleet: bool,
    warn: str | None,
    crit: str | None,
    window: str,
    as_json: bool,
) -> None:
    """Check SERVICE of CLUSTER (or --all) as a monitoring plugin. SERVICE: archive,
    copies, wal-gaps, backup, targets, replication-lag, replication-slots, timeline,
    scheduler, all.
    RANGE: 10, 10:, ~:10, 10:20, @10:20 with units (15m, 26h, 64MB), or per metric
    NAME=RANGE,NAME=RANGE (see docs/monitoring.md)."""
    from pgharbor.monitor.registry import run_check

    try:
        seconds = number(window, "s")
        report = run_check(
            app.svc, service, cluster, fleet=fleet, warn=warn, crit=crit, window=seconds
        )
    except PgharborError as exc:  # bad arguments, no catalog, no such cluster: UNKNOWN
        if as_json:
            emit_json({"service": service, "state": "UNKNOWN", "summary": exc.message})
        else:
            click.echo("\n".join(nagios.unknown(service, exc.message)))
        raise click.exceptions.Exit(UNKNOWN) from None
    if as_json:
        emit_json(check_json(report))
    else:
        click.echo("\n".join(nagios.lines(report)))
    raise click.exceptions.Exit(int(report.state))


def register(root: click.Group) -> None:
    root.add_command(check)
