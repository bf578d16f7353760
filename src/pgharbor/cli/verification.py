"""verify, wal gaps, wal gaps ack."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_time
from pgharbor.services import verification

if TYPE_CHECKING:
    from pgharbor.services.verification import VerificationResult


def _echo(r: VerificationResult) -> None:
    span = ", ".join(f"timeline {t}: {a}..{b}" for t, (a, b) in sorted(r.expected.items()))
    click.echo(f"{r.cluster}: expected {span or 'nothing yet'}")
    click.echo(
        f"  content: {r.content_checked} files read back"
        + (f", {len(r.content_bad)} bad copies" if r.content_bad else "")
    )
    for line in r.content_bad:
        click.echo(f"    {line}")
    if r.backups_checked:
        click.echo(
            f"  backups verified: {', '.join(r.backups_checked)}"
            + (f"; {len(r.backups_bad)} bad copies" if r.backups_bad else "")
        )
    for line in r.backups_bad:
        click.echo(f"    {line}")
    if r.repaired:
        click.echo(f"  repaired {len(r.repaired)} copies: {', '.join(r.repaired)}")
    if r.recorded:
        click.echo(f"  recorded {r.recorded} stored copies the catalog lacked")
    for g in r.gaps:
        click.echo(
            f"  gap {g.id} on timeline {g.timeline}: {g.first_segment}..{g.last_segment} "
            f"({g.segments} segments) {g.state}" + (" (acknowledged)" if g.acked else "")
        )
    for b in r.unusable:
        click.echo(f"  backup {b} marked unusable (its WAL has a lost segment)")
    for b in r.usable_again:
        click.echo(f"  backup {b} usable again (its lost WAL came back)")
    for line in r.not_repaired:
        click.echo(f"  not repaired: {line}")
    for line in r.problems:
        click.echo(f"  not checked: {line}")


@click.command("verify")
@click.argument("cluster", required=False)
@click.option("--all", "all_clusters", is_flag=True, help="Every active cluster of the fleet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def verify(app: AppContext, cluster: str | None, all_clusters: bool, as_json: bool) -> None:
    """Verify and repair the archived WAL of CLUSTER (or --all), as the scheduler's
    verify job does: a slice read back, gaps from the catalog, lag repaired, losses
    confirmed and recorded, backups with lost WAL marked unusable."""
    if bool(cluster) == all_clusters:
        raise click.UsageError("give a CLUSTER or --all (one of them)")
    results = (
        verification.verify_all(app.svc)
        if all_clusters
        else [verification.verify(app.svc, cluster or "")]
    )
    if as_json:
        emit_json(results)
    else:
        for r in results:
            _echo(r)
    bad = [r.cluster for r in results if not r.ok]
    if bad:
        from pgharbor.errors import IntegrityError

        raise IntegrityError(
            f"verify found lost WAL or could not finish for {', '.join(bad)}",
            hint="see pgharbor wal gaps CLUSTER",
        )


class _GapsGroup(click.Group):
    """``wal gaps CLUSTER`` lists, ``wal gaps ack CLUSTER GAP`` acknowledges: a first
    argument that is no subcommand goes to the hidden ``list``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("gaps", cls=_GapsGroup)
def gaps() -> None:
    """The WAL gaps verify recorded: wal gaps CLUSTER [--all] [--json] lists them
    (pending, lost; --all: resolved too), wal gaps ack CLUSTER GAP --reason TEXT."""


@gaps.command("list", hidden=True)
@click.argument("cluster")
@click.option("--all", "everything", is_flag=True, help="Resolved gaps too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def gaps_list(app: AppContext, cluster: str, everything: bool, as_json: bool) -> None:
    """The WAL gaps of CLUSTER."""
    found = verification.list_gaps(app.svc, cluster, everything=everything)
    if as_json:
        emit_json(found)
        return
    emit_table(
        ["gap", "timeline", "first", "last", "segments", "state", "first seen", "acknowledged"],
        [
            (
                g.id,
                g.timeline,
                g.first_segment,
                g.last_segment,
                g.segments,
                g.state,
                fmt_time(g.first_seen),
                f"{fmt_time(g.acked_at)} by {g.acked_by}: {g.ack_reason}" if g.acked else "",
            )
            for g in found.gaps
        ],
    )
    lost = [g for g in found.gaps if g.state == "lost"]
    click.echo(
        f"{len(found.gaps)} gap(s); {len(lost)} lost, {sum(not g.acked for g in lost)} "
        "unacknowledged"
    )


@gaps.command("ack")
@click.argument("cluster")
@click.argument("gap", type=int)
@click.option("--reason", required=True, help="Why the gap is accepted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def gaps_ack(app: AppContext, cluster: str, gap: int, reason: str, as_json: bool) -> None:
    """Acknowledge WAL gap GAP of CLUSTER (it stays recorded and still ends the window)."""
    g = verification.ack_gap(app.svc, cluster, gap, reason)
    if as_json:
        emit_json(g)
    else:
        click.echo(
            f"{cluster}: gap {g.id} ({g.first_segment}..{g.last_segment}, {g.state}) "
            f"acknowledged by {g.acked_by}: {g.ack_reason}"
        )


def register(root: click.Group) -> None:
    root.add_command(verify)
    wal = root.commands["wal"]
    assert isinstance(wal, click.Group)
    wal.add_command(gaps)
