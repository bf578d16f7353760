"""backup create / list / show / delete / verify / hold / release."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_bytes, fmt_time
from pgharbor.services import backups, retention

if TYPE_CHECKING:
    from pgharbor.backup.verify import PlacementCheck


@click.group()
def backup() -> None:
    """Base backups into each target's deduplicated chunk store."""


@backup.command("create")
@click.argument("cluster")
@click.option("--target", help="Only this target (default: every active placement).")
@click.option(
    "--wal-timeout",
    default=300,
    show_default=True,
    type=float,
    help="Seconds to wait for the WAL the backup needs to be archived.",
)
@pass_app
def backup_create(app: AppContext, cluster: str, target: str | None, wal_timeout: float) -> None:
    """Take a base backup of CLUSTER over the network (no agent on the database host)."""
    from pgharbor.render.progress import progress_bar

    with progress_bar("backup", sys.stderr.isatty()) as (progress, say):
        r = backups.create(
            app.svc, cluster, target=target, wal_timeout=wal_timeout, progress=progress, say=say
        )
    ratio = r.stored_bytes / r.logical_bytes * 100 if r.logical_bytes else 0
    click.echo(
        f"backup {r.id} of {r.cluster}: ok, {fmt_bytes(r.logical_bytes)} in {r.files} files, "
        f"{fmt_bytes(r.stored_bytes)} new on {', '.join(r.targets)} ({ratio:.1f}%), "
        f"{r.start_lsn}..{r.stop_lsn}, {r.seconds:.1f} s"
    )


@backup.command("list")
@click.argument("cluster")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def backup_list(app: AppContext, cluster: str, as_json: bool) -> None:
    """CLUSTER's backups, oldest first."""
    items = backups.list_backups(app.svc, cluster)
    if as_json:
        emit_json(items)
        return
    emit_table(
        [
            "id",
            "status",
            "timeline",
            "start lsn",
            "stop lsn",
            "stop time",
            "logical",
            "stored",
            "targets",
            "drilled at",
        ],
        [
            (
                b.id,
                b.status,
                b.timeline,
                b.start_lsn,
                b.stop_lsn,
                fmt_time(b.stop_time),
                fmt_bytes(b.logical_bytes),
                fmt_bytes(b.stored_bytes),
                ", ".join(b.targets),
                fmt_time(b.drilled_at) or "-",
            )
            for b in items
        ],
    )


@backup.command("show")
@click.argument("cluster")
@click.argument("backup_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def backup_show(app: AppContext, cluster: str, backup_id: str, as_json: bool) -> None:
    """One backup."""
    from dataclasses import asdict

    b = backups.show(app.svc, cluster, backup_id)
    if as_json:
        emit_json(b)
        return
    for k, v in asdict(b).items():
        click.echo(f"{k:>14}: {v if not isinstance(v, list) else ', '.join(v)}")


@backup.command("delete")
@click.argument("cluster")
@click.argument("backup_id", metavar="ID")
@pass_app
def backup_delete(app: AppContext, cluster: str, backup_id: str) -> None:
    """Delete a backup; chunks no other backup uses are freed."""
    r = backups.delete(app.svc, cluster, backup_id)
    for target, g in r.gc.items():
        extra = f", {g.orphans} orphans" if g.orphans else ""
        extra += f", leftovers of {g.leftovers} dead backup(s)" if g.leftovers else ""
        click.echo(
            f"{target}: {g.chunks_freed} chunks freed ({fmt_bytes(g.bytes_freed)}), "
            f"{g.packs_deleted} packs deleted, {g.packs_rewritten} rewritten{extra}"
        )
    click.echo(f"backup {r.id} of {r.cluster} deleted")


@backup.command("verify")
@click.argument("cluster")
@click.argument("backup_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def backup_verify(app: AppContext, cluster: str, backup_id: str, as_json: bool) -> None:
    """Read and check every chunk of a backup on each placement that holds it."""
    from pgharbor.errors import IntegrityError

    r = backups.verify(app.svc, cluster, backup_id)
    if as_json:
        emit_json(r)
    else:
        for p in r.placements:
            _echo_check(p)
    if not r.ok:
        bad = [p.target for p in r.placements if p.status != "ok"]
        raise IntegrityError(
            f"backup {r.backup_id} of {r.cluster} is not whole on {', '.join(bad)}"
        )


@backup.command("hold")
@click.argument("cluster")
@click.argument("backup_id", metavar="ID")
@click.option("--until", metavar="TS", help="Until this time (ISO 8601 with a time zone).")
@click.option("--reason", required=True, help="Why it is kept (shown by expire).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def backup_hold(
    app: AppContext, cluster: str, backup_id: str, until: str | None, reason: str, as_json: bool
) -> None:
    """Pin a backup: expire keeps it (and its WAL) until released or until TS."""
    h = retention.hold(app.svc, cluster, backup_id, reason=reason, until=until)
    if as_json:
        emit_json(h)
        return
    until_text = f" until {fmt_time(h.until)}" if h.until else " until released"
    click.echo(f"backup {h.backup_id} of {h.cluster} held{until_text}: {h.reason}")


@backup.command("release")
@click.argument("cluster")
@click.argument("backup_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def backup_release(app: AppContext, cluster: str, backup_id: str, as_json: bool) -> None:
    """Remove a backup's hold: retention decides about it again."""
    h = retention.release(app.svc, cluster, backup_id)
    if as_json:
        emit_json(h)
        return
    click.echo(f"backup {h.backup_id} of {h.cluster} released")


def _echo_check(p: PlacementCheck) -> None:
    if p.status == "ok":
        click.echo(f"{p.target}: ok, {p.chunks} chunks verified")
    else:
        click.echo(
            f"{p.target}: {p.status.upper()}: {p.ok} of {p.chunks} chunks ok, {p.missing} "
            f"missing, {p.corrupt} corrupt" + (f", {p.unchecked} unchecked" if p.unchecked else "")
        )
    for problem in p.problems:
        click.echo(f"  {problem}")
    for b in p.bad:
        click.echo(f"  {b.path} chunk {b.chunk} ({b.id}…): {b.problem}")
    for note in p.notes:
        click.echo(f"  note: {note}")


def register(root: click.Group) -> None:
    root.add_command(backup)
