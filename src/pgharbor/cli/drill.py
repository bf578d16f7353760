"""drill run, drill list: restore drills."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_bytes, fmt_time
from pgharbor.services import drills

if TYPE_CHECKING:
    from pgharbor.drill.run import DrillResult


@click.group("drill")
def drill() -> None:
    """Restore drills: prove backups recoverable by restoring and starting them."""


def _echo(r: DrillResult) -> None:
    verdict = "passed" if r.ok else "FAILED"
    click.echo(
        f"drill {r.id} of {r.cluster}: {verdict}; backup {r.backup_id} to {r.target}; "
        f"RTO {r.total_s:.1f} s (restore {r.restore_s:.1f} s, recovery {r.recovery_s:.1f} s); "
        f"{fmt_bytes(r.bytes_restored)} restored, {r.wal_segments} WAL segments replayed"
        + (f", reached {r.reached_lsn}" if r.reached_lsn else "")
    )
    for c in r.checks:
        state = {True: "ok", False: "FAILED", None: "skipped"}[c.ok]
        click.echo(f"  {c.name}: {state}: {c.detail}")
    if r.error:
        click.echo(f"  error: {r.error}")
    if r.scratch:
        click.echo(f"  scratch folder kept: {r.scratch}")


@drill.command("run")
@click.argument("cluster")
@click.option("--backup", "backup_id", help="Backup to drill (default: the newest usable).")
@click.option("--target-time", help="Recover to this moment (ISO 8601 with time zone).")
@click.option("--target-lsn", help="Recover to this LSN (X/Y).")
@click.option("--target-xid", help="Recover to this transaction id.")
@click.option("--target-name", help="Recover to this named restore point.")
@click.option("--target-immediate", is_flag=True, help="Stop as soon as the backup is consistent.")
@click.option("--keep", is_flag=True, help="Keep the scratch folder (it is kept on failure).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def run_cmd(
    app: AppContext,
    cluster: str,
    backup_id: str | None,
    target_time: str | None,
    target_lsn: str | None,
    target_xid: str | None,
    target_name: str | None,
    target_immediate: bool,
    keep: bool,
    as_json: bool,
) -> None:
    """Restore CLUSTER into a scratch folder, start it on loopback, check it, record it
    (default: the newest usable backup, to the end of the archive — or a random point of
    the window with the cluster's drill_target = "random")."""
    from pgharbor.domain.pitr import RecoveryTarget

    target = RecoveryTarget.from_options(
        time=target_time,
        lsn=target_lsn,
        xid=target_xid,
        name=target_name,
        immediate=target_immediate,
    )
    say = (lambda s: click.echo(s, err=True)) if sys.stderr.isatty() and not as_json else None
    given = None if target.kind == "end" else target  # none: the cluster's drill_target
    r = drills.run(app.svc, cluster, given, backup_id=backup_id, keep=keep, say=say or _quiet)
    if as_json:
        emit_json(r)
    else:
        _echo(r)
    if not r.ok:
        from pgharbor.errors import DrillFailed

        bad = next((f"{c.name}: {c.detail}" for c in r.checks if c.ok is False), r.error)
        raise DrillFailed(f"drill {r.id} of {r.cluster} failed: {bad}")


def _quiet(text: str) -> None:
    pass


@drill.command("list")
@click.argument("cluster")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_cmd(app: AppContext, cluster: str, as_json: bool) -> None:
    """CLUSTER's drills, newest first."""
    got = drills.list_drills(app.svc, cluster)
    if as_json:
        emit_json(got.drills)
        return
    emit_table(
        ["ID", "STARTED", "BACKUP", "TARGET", "STATUS", "RTO", "SEGMENTS", "ERROR"],
        [
            [
                str(d.id),
                fmt_time(d.started_at),
                d.backup_id,
                d.target,
                d.status,
                f"{d.total_s:.1f}s" if d.total_s is not None else "-",
                str(d.wal_segments if d.wal_segments is not None else "-"),
                (d.error or "")[:60],
            ]
            for d in got.drills
        ],
    )


def register(root: click.Group) -> None:
    root.add_command(drill)
