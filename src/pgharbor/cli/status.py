"""status: one screen per cluster."""

from __future__ import annotations

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, fmt_bytes, fmt_time
from pgharbor.services import status as status_service


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _render(st: status_service.ClusterStatus) -> None:
    click.echo(
        f"{st.cluster}: {'active' if st.active else 'INACTIVE'}, {st.required_copies} required "
        f"cop{'y' if st.required_copies == 1 else 'ies'} on {', '.join(st.placements) or 'no placement'}"
    )
    last = (
        f"{st.last_archived} ({fmt_time(st.last_archived_at)}, {_age(st.last_archived_age_s)})"
        if st.last_archived
        else "nothing yet"
    )
    click.echo(f"  last archived: {last}; {st.files} files, {st.missing_copies} missing a copy")
    b = st.backups
    if b is not None:
        click.echo(
            f"  backups: {b.usable} usable ({fmt_bytes(b.stored_bytes)} stored)"
            + (f", newest {b.newest} ({fmt_time(b.newest_stop_time)})" if b.newest else "")
            + (f", oldest {b.oldest}" if b.oldest and b.oldest != b.newest else "")
            + (f", {b.failed} failed" if b.failed else "")
            + (f", {b.running} running" if b.running else "")
            + (f", {b.unusable} unusable (lost WAL)" if b.unusable else "")
        )
    for g in st.gaps:
        click.echo(
            f"  WAL gap {g.id} on timeline {g.timeline}: {g.first_segment}..{g.last_segment} "
            f"({g.segments} segments) {g.state}"
            + (f", acknowledged by {g.acked_by}" if g.acked else "")
            + (": the window ends before it" if g.state == "lost" else "")
        )
    for w in st.windows:
        click.echo(
            f"  recoverable on timeline {w.timeline}: from {fmt_time(w.start_time) or w.start_lsn} "
            f"({w.start_lsn}) to {w.end_lsn} (through {w.end_segment}, archived "
            f"{fmt_time(w.end_archived_at)})"
        )
    if not st.windows:
        click.echo("  recoverable: nothing yet (no usable backup with its WAL)")
    if st.proven_at is not None:
        click.echo(
            f"  last proven recoverable: {fmt_time(st.proven_at)}, RTO {st.proven_rto_s or 0:.1f} s "
            f"(drill of backup {st.proven_backup})"
        )
    else:
        click.echo("  last proven recoverable: never (no drill passed: pgharbor drill run)")
    rp = st.latest_restore_point
    click.echo(
        f"  restore points: {st.restore_points}"
        + (f", latest {rp.name!r} at {rp.lsn}" if rp else "")
    )


@click.command("status")
@click.argument("cluster", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app: AppContext, cluster: str | None, as_json: bool) -> None:
    """One screen per cluster (or CLUSTER): last archived file, missing copies, backups,
    the recoverable window per timeline, restore points."""
    results = status_service.status(app.svc, cluster)
    if as_json:
        emit_json(results)
        return
    for st in results:
        _render(st)


def register(root: click.Group) -> None:
    root.add_command(status)
