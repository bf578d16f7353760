"""catalog commands: parse, call one service, render."""

from __future__ import annotations

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.errors import Incomplete
from pgharbor.render.output import emit_json
from pgharbor.services import rebuild as rebuild_service


@click.group()
def catalog() -> None:
    """The catalog itself (an index of what the targets hold)."""


@catalog.command("rebuild")
@click.option(
    "--target",
    "urls",
    multiple=True,
    required=True,
    metavar="URL",
    help="A target's URL; repeat in priority order (the first is written and read first).",
)
@click.option(
    "--skip-restore-points",
    is_flag=True,
    help="Do not scan the archived WAL for restore points now (restore-point list does).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def rebuild(
    app: AppContext, urls: tuple[str, ...], skip_restore_points: bool, as_json: bool
) -> None:
    """Rebuild a lost catalog (the one --catalog names: new or empty) from the targets."""
    r = rebuild_service.rebuild(app.svc, list(urls), restore_points=not skip_restore_points)
    if as_json:
        emit_json(r)
    else:
        click.echo(
            f"catalog {r.catalog} rebuilt from {len(r.targets)} target(s) "
            f"({', '.join(r.targets)}): {len(r.clusters)} cluster(s), {r.placements} "
            f"placement(s), {r.wal_copies} WAL copies, {r.backups} backup(s) "
            f"({r.backup_copies} copies), {r.restore_points} restore point(s)"
        )
        for note in r.notes:
            click.echo(f"note: {note}")
        for problem in r.problems:
            click.echo(f"skipped: {problem}")
        for name in r.needs_dsn:
            click.echo(f"next: pgharbor cluster set {name} --dsn DSN  (no DSN is kept on a target)")
    if not r.ok:
        raise Incomplete(
            f"catalog rebuild skipped {r.skipped} object(s) it could not read (listed above): "
            "the catalog lacks them",
            hint="fix what is listed (a missing key, a damaged object) and rebuild into a new "
            "catalog, or accept the loss",
        )


def register(root: click.Group) -> None:
    root.add_command(catalog)
