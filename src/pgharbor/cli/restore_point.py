"""restore-point create / list: named points to restore to."""

from __future__ import annotations

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_time
from pgharbor.services import restores


@click.group("restore-point")
def restore_point() -> None:
    """Named restore points (for restore --target-name)."""


@restore_point.command("create")
@click.argument("cluster")
@click.argument("name")
@pass_app
def restore_point_create(app: AppContext, cluster: str, name: str) -> None:
    """Create restore point NAME on CLUSTER's primary (pg_create_restore_point) and record
    it; a restore can reach it once its WAL is archived."""
    p = restores.create_point(app.svc, cluster, name)
    click.echo(
        f"restore point {p.name!r} of {cluster}: LSN {p.lsn} on timeline {p.timeline}, "
        f"{fmt_time(p.time)}"
    )


@restore_point.command("list")
@click.argument("cluster")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def restore_point_list(app: AppContext, cluster: str, as_json: bool) -> None:
    """CLUSTER's restore points in WAL order: those made with restore-point create, and
    those found in the archived WAL (made with plain SQL), which is scanned first."""
    points = restores.list_points(app.svc, cluster)
    if as_json:
        emit_json(points)
        return
    emit_table(
        ["name", "lsn", "timeline", "time", "source"],
        [(p.name, p.lsn, p.timeline, fmt_time(p.time), p.source) for p in points],
    )


def register(root: click.Group) -> None:
    root.add_command(restore_point)
