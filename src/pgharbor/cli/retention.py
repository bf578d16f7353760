"""expire, retention set / show."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, fmt_bytes, fmt_time
from pgharbor.services import retention

if TYPE_CHECKING:
    from pgharbor.backup.expire import ExpireRun
    from pgharbor.domain.retention import Policy
    from pgharbor.services.retention import PolicyView


def _scope(cluster: str | None, default: bool) -> str | None:
    if bool(cluster) == default:
        raise click.UsageError("give a CLUSTER or --default (one of them)")
    return cluster


@click.command("expire")
@click.argument("cluster", required=False)
@click.option("--all", "all_clusters", is_flag=True, help="Every cluster of the fleet.")
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@click.option("--force", is_flag=True, help="Override the safety guards (not the floors).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def expire(
    app: AppContext,
    cluster: str | None,
    all_clusters: bool,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Delete the backups and WAL no retention rule keeps (CLUSTER, or --all)."""
    if bool(cluster) == all_clusters:
        raise click.UsageError("give a CLUSTER or --all (one of them)")
    report = retention.expire(app.svc, cluster, dry_run=dry_run, force=force)
    if as_json:
        emit_json(report)
    else:
        for run in report.runs:
            _echo_run(run)
    if not report.ok and not dry_run:
        from pgharbor.errors import PgharborError

        bad = [r.cluster for r in report.runs if not r.ok]
        raise PgharborError(f"expire did not complete for {', '.join(bad)}")


def describe(p: Policy) -> str:
    parts = [f"keep-last {p.keep_last}"] if p.keep_last else []
    if p.recovery_window is not None:
        from pgharbor.domain.retention import format_duration

        parts.append(f"recovery-window {format_duration(p.recovery_window)}")
    parts.append(f"min-backups {p.min_backups}")
    return ", ".join(parts)


def _echo_run(r: ExpireRun) -> None:
    if r.error:
        click.echo(f"{r.cluster}: error: {r.error}")
        return
    click.echo(f"{r.cluster}: {describe(r.policy)}" + (" (dry run)" if r.dry_run else ""))
    for v in r.backups:
        action = v.action if v.keep else f"delete ({v.why_delete})"
        click.echo(f"  {v.id}  {v.status:<8}  {fmt_time(v.stop_time):<24}  {action}")
    for t in r.timelines:
        kept = f"{t.kept} kept from {t.kept_from}" if t.kept_from else "none kept"
        note = f" ({t.note})" if t.note else ""
        click.echo(f"  WAL timeline {t.timeline}: {kept}, {t.deleted} to delete{note}")
    if r.history_kept:
        needed = ", ".join(map(str, r.history_kept))
        click.echo(f"  .history needed for timeline(s) {needed} (no .history is deleted)")
    for line in r.refusals:
        click.echo(f"  refused: {line}")
    for line in r.guards:
        click.echo(f"  guard: {line}" + (" (forced)" if r.forced else ""))
    for line in r.notes:
        click.echo(f"  note: {line}")
    if r.dry_run:
        n = len([v for v in r.backups if not v.keep])
        click.echo(f"  would delete {n} backup(s) and {len(r.wal_delete)} WAL file(s)")
        return
    if not r.ok:
        click.echo("  nothing changed (refused)")
        return
    for target, g in sorted(r.gc.items()):
        click.echo(
            f"  {target}: {g.chunks_freed} chunks freed ({fmt_bytes(g.bytes_freed)}), "
            f"{g.packs_deleted} packs deleted, {g.packs_rewritten} rewritten"
        )
    kept = f", {len(r.skipped)} held meanwhile and kept" if r.skipped else ""
    click.echo(
        f"  deleted {len(r.deleted)} backup(s) and {len(r.wal_delete)} WAL file(s) "
        f"({r.wal_objects_deleted} copies){kept}"
    )


@click.group("retention")
def retention_group() -> None:
    """The retention policy: the fleet default and per-cluster overrides."""


@retention_group.command("set")
@click.argument("cluster", required=False)
@click.option("--default", "default", is_flag=True, help="The fleet default.")
@click.option("--keep-last", type=int, help="Keep the newest N usable backups (0: off).")
@click.option(
    "--recovery-window",
    metavar="DURATION",
    help="Keep what restores to any time in the last DURATION (7d, 36h, 1w2d; off).",
)
@click.option("--min-backups", type=int, help="Never fewer than N usable backups (at least 1).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def retention_set(
    app: AppContext,
    cluster: str | None,
    default: bool,
    keep_last: int | None,
    recovery_window: str | None,
    min_backups: int | None,
    as_json: bool,
) -> None:
    """Set the retention of CLUSTER (or the fleet --default); unset fields fall back."""
    view = retention.set_policy(
        app.svc,
        _scope(cluster, default),
        keep_last=keep_last,
        recovery_window=recovery_window,
        min_backups=min_backups,
    )
    _echo_policy(view, as_json)


@retention_group.command("show")
@click.argument("cluster", required=False)
@click.option("--default", "default", is_flag=True, help="The fleet default.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def retention_show(app: AppContext, cluster: str | None, default: bool, as_json: bool) -> None:
    """The retention set for CLUSTER (and the policy in force) or the fleet --default."""
    _echo_policy(retention.show_policy(app.svc, _scope(cluster, default)), as_json)


def _echo_policy(v: PolicyView, as_json: bool) -> None:
    if as_json:
        emit_json(v)
        return

    def shown(x: object) -> str:
        return "(not set)" if x is None else str(x)

    click.echo(f"{v.scope}:")
    click.echo(f"  keep-last:       {shown(v.keep_last)}")
    click.echo(f"  recovery-window: {shown(v.recovery_window)}")
    click.echo(f"  min-backups:     {shown(v.min_backups)}")
    if v.effective is not None:
        state = "" if v.ok else " (no rule: expire refuses)"
        click.echo(f"  in force:        {describe(v.effective)}{state}")


def register(root: click.Group) -> None:
    root.add_command(expire)
    root.add_command(retention_group)
