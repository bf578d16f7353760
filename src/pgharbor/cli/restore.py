"""restore: a data directory from a backup, recovering to a target or as a standby."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import fmt_bytes
from pgharbor.services import restores


@click.command("restore")
@click.argument("cluster")
@click.option(
    "--pgdata", required=True, type=click.Path(path_type=Path), help="Data directory to create."
)
@click.option(
    "--backup", "backup_id", help="Backup to restore (default: the one needing the least replay)."
)
@click.option("--target-time", help="Recover to this moment (ISO 8601 with time zone).")
@click.option("--target-lsn", help="Recover to this LSN (X/Y).")
@click.option("--target-xid", help="Recover to this transaction id.")
@click.option("--target-name", help="Recover to this named restore point.")
@click.option("--target-immediate", is_flag=True, help="Stop as soon as the backup is consistent.")
@click.option(
    "--target-inclusive/--no-target-inclusive",
    default=True,
    show_default=True,
    help="Stop just after (inclusive) or just before the target.",
)
@click.option(
    "--target-timeline",
    default="latest",
    show_default=True,
    help="Timeline number, latest or current.",
)
@click.option(
    "--target-action",
    type=click.Choice(["promote", "pause", "shutdown"]),
    default="promote",
    show_default=True,
    help="What the server does at the target.",
)
@click.option(
    "--standby", is_flag=True, help="Make a standby (standby.signal) instead of recovering."
)
@click.option("--primary-conninfo", help="With --standby: stream from this primary.")
@click.option(
    "--tablespace-map", multiple=True, metavar="OLD=NEW", help="Restore a tablespace elsewhere."
)
@click.option(
    "--delta", is_flag=True, help="Reuse an existing data directory: rewrite only what differs."
)
@click.option(
    "--archive-mode",
    type=click.Choice(["off", "preserve"]),
    help="off: the copy archives nothing (default, unless --standby); preserve: it keeps "
    "production's archive_mode and archive_command (a copy that becomes the new primary).",
)
@pass_app
def restore_cmd(
    app: AppContext,
    cluster: str,
    pgdata: Path,
    backup_id: str | None,
    target_time: str | None,
    target_lsn: str | None,
    target_xid: str | None,
    target_name: str | None,
    target_immediate: bool,
    target_inclusive: bool,
    target_timeline: str,
    target_action: str,
    standby: bool,
    primary_conninfo: str | None,
    tablespace_map: tuple[str, ...],
    delta: bool,
    archive_mode: str | None,
) -> None:
    """Restore CLUSTER into --pgdata and set up recovery (then start the server)."""
    from pgharbor.domain.pitr import RecoveryTarget
    from pgharbor.render.progress import progress_bar
    from pgharbor.restore.restore import Options

    mapping = restores.tablespace_map(tablespace_map)
    target = RecoveryTarget.from_options(
        time=target_time,
        lsn=target_lsn,
        xid=target_xid,
        name=target_name,
        immediate=target_immediate,
        inclusive=target_inclusive,
        timeline=target_timeline,
        action=target_action,
    )
    options = Options(backup_id, standby, primary_conninfo, mapping, delta, archive_mode)
    with progress_bar("restore", sys.stderr.isatty()) as (progress, say):
        r = restores.restore(app.svc, cluster, pgdata, target, options, progress=progress, say=say)
    for note in r.fallbacks[:5] + r.notes:
        click.echo(f"note: {note}", err=True)
    extra = f", {r.files_unchanged} files unchanged, {r.files_removed} removed" if delta else ""
    click.echo(
        f"restored backup {r.backup_id} into {r.pgdata}: {r.files} files, "
        f"{fmt_bytes(r.bytes_written)} written{extra}; recovery to {r.target} "
        f"({'standby' if standby else 'timeline ' + str(r.timeline)}). Start the server to recover."
    )
    if r.archive_mode == "off":
        click.echo(
            "archive_mode = off in postgresql.auto.conf: this copy archives nothing "
            f"(--archive-mode preserve for a copy that takes over as {cluster}'s primary)"
        )
    else:
        click.echo(
            f"archive_mode preserved: once promoted, this copy archives like production "
            f"(into {cluster}'s archive, if its archive_command says so)"
        )


def register(root: click.Group) -> None:
    root.add_command(restore_cmd)
