"""init, target, cluster and placement commands: parse, call one service, render."""

from __future__ import annotations

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.model import Placement
from pgharbor.render.output import emit_json, emit_table, fmt_bytes, fmt_time
from pgharbor.services import catalog as catalog_service
from pgharbor.services import clusters, placements, targets

json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.command()
@pass_app
def init(app: AppContext) -> None:
    """Create the catalog, or upgrade its schema. Safe to run twice."""
    r = catalog_service.init(app.svc)
    if r.before == r.after:
        click.echo(f"catalog {r.catalog} is up to date (schema revision {r.after})")
    else:
        click.echo(
            f"catalog {r.catalog} upgraded: schema revision {r.before or 'none'} -> {r.after}"
        )


@click.group()
def target() -> None:
    """Archive targets (file://, ssh://, s3://)."""


@target.command("add")
@click.argument("name")
@click.argument("url")
@pass_app
def target_add(app: AppContext, name: str, url: str) -> None:
    """Register target NAME at URL (it must exist and be reachable: it is claimed)."""
    t = targets.add(app.svc, name, url)
    click.echo(f"target {t.name} added ({t.url})")


@target.command("list")
@json_opt
@pass_app
def target_list(app: AppContext, as_json: bool) -> None:
    """List targets."""
    items = targets.list_targets(app.svc)
    if as_json:
        emit_json(items)
        return
    emit_table(
        ["name", "url", "active", "created"],
        [(t.name, t.url, "yes" if t.active else "no", fmt_time(t.created_at)) for t in items],
    )


@target.command("remove")
@click.argument("name")
@pass_app
def target_remove(app: AppContext, name: str) -> None:
    """Remove target NAME (refused while a placement uses it). Stored files stay."""
    t = targets.remove(app.svc, name)
    click.echo(f"target {t.name} removed (files stored on it were left in place)")


@target.command("set")
@click.argument("name")
@click.option("--url", required=True, help="The new URL of the same storage.")
@pass_app
def target_set(app: AppContext, name: str, url: str) -> None:
    """Reach target NAME at a new URL (the same storage only: its marker and the claims
    of the clusters placed there must be found)."""
    t = targets.set_url(app.svc, name, url)
    click.echo(f"target {t.name} is now reached at {t.url}")


@target.command("check")
@click.argument("name", required=False)
@click.option("--all", "every", is_flag=True, help="Check every target.")
@json_opt
@pass_app
def target_check(app: AppContext, name: str | None, every: bool, as_json: bool) -> None:
    """Is target NAME (or --all) reachable, writable, durable, with room, and does it hold
    the claims of the clusters placed on it?"""
    from pgharbor.errors import StorageError, UsageError
    from pgharbor.services import health

    if bool(name) == every:
        raise UsageError("give a target NAME or --all")
    results = health.check(app.svc, name)
    if as_json:
        emit_json(results)
    else:
        for r in results:
            room = (
                f", {fmt_bytes(r.free_bytes)} free of {fmt_bytes(r.total_bytes)}"
                if r.total_bytes
                else ""
            )
            state = "ok" if r.ok else "NOT OK"
            click.echo(
                f"{r.target}: {state}: reachable {_yes(r.reachable)}, writable "
                f"{_yes(r.writable)}, durable {_yes(r.durable)}{room}; "
                f"{len(r.clusters)} cluster claim(s)"
            )
            for problem in r.problems:
                click.echo(f"  {problem}")
    bad = [r.target for r in results if not r.ok]
    if bad:
        raise StorageError(f"target check failed for {', '.join(bad)}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@click.group()
def cluster() -> None:
    """PostgreSQL clusters of the fleet."""


@cluster.command("add")
@click.argument("name")
@click.option("--dsn", required=True, help="libpq connection string of the running cluster.")
@click.option("--idc", default="", help="Data centre.")
@click.option("--platform", default="", help="Platform (e.g. bare-metal, k8s, vm).")
@click.option(
    "--required-copies",
    default=1,
    show_default=True,
    type=int,
    help="Copies that must be durable before a WAL file counts as archived.",
)
@click.option(
    "--async",
    "archive_async",
    is_flag=True,
    help="Async archiving: a resident pusher works ahead of archive_command.",
)
@pass_app
def cluster_add(
    app: AppContext,
    name: str,
    dsn: str,
    idc: str,
    platform: str,
    required_copies: int,
    archive_async: bool,
) -> None:
    """Register the running cluster reachable at DSN as NAME."""
    reg = clusters.register(
        app.svc,
        name,
        dsn,
        idc=idc,
        platform=platform,
        required_copies=required_copies,
        archive_async=archive_async,
    )
    c = reg.cluster
    click.echo(
        f"cluster {c.name} registered: id {c.id}, system identifier {c.system_identifier}, "
        f"PostgreSQL {c.version}, WAL segment {fmt_bytes(c.wal_segment_size)}"
        + (" (kept the id found in its fingerprint)" if reg.adopted_fingerprint else "")
    )
    for note in reg.notes:
        click.echo(f"note: {note}")
    click.echo("Put these lines in its postgresql.conf (archive_mode = on):")
    click.echo(f"  {reg.archive_command}")
    click.echo(f"  {reg.restore_command}")


@cluster.command("list")
@json_opt
@pass_app
def cluster_list(app: AppContext, as_json: bool) -> None:
    """List clusters."""
    items = clusters.list_clusters(app.svc)
    if as_json:
        emit_json(items)
        return
    emit_table(
        ["name", "idc", "host:port", "version", "system identifier", "copies", "active"],
        [
            (
                c.name,
                c.idc,
                f"{c.host}:{c.port}",
                c.version,
                c.system_identifier,
                c.required_copies,
                "yes" if c.active else "no",
            )
            for c in items
        ],
    )


@cluster.command("show")
@click.argument("name")
@json_opt
@pass_app
def cluster_show(app: AppContext, name: str, as_json: bool) -> None:
    """Show one cluster with its placements."""
    view = clusters.show(app.svc, name)
    c = view.cluster
    if as_json:
        emit_json({**c.as_dict(), "placements": view.placements})
        return
    for label, value in [
        ("name", c.name),
        ("id", c.id),
        ("system identifier", c.system_identifier),
        ("version", f"{c.version} ({c.version_num})"),
        ("host", f"{c.host}:{c.port}"),
        ("dsn", c.dsn),
        ("data centre", c.idc),
        ("platform", c.platform),
        ("WAL segment size", fmt_bytes(c.wal_segment_size)),
        ("required copies", c.required_copies),
        ("active", "yes" if c.active else "no"),
        ("created", fmt_time(c.created_at)),
        ("modified", fmt_time(c.modified_at)),
    ]:
        click.echo(f"{label:>18}: {value}")
    _placements_table(view.placements, title="placements")


@cluster.command("set")
@click.argument("name")
@click.option("--dsn", help="A new libpq connection string of the same cluster's primary.")
@click.option("--required-copies", type=int, help="Copies required before a WAL file counts.")
@click.option("--active/--inactive", default=None, help="Archive this cluster or refuse to.")
@click.option(
    "--async/--sync",
    "archive_async",
    default=None,
    help="Async archiving (a resident pusher works ahead) or sync.",
)
@pass_app
def cluster_set(
    app: AppContext,
    name: str,
    dsn: str | None,
    required_copies: int | None,
    active: bool | None,
    archive_async: bool | None,
) -> None:
    """Change a cluster's settings (--dsn is checked against the server: the same system
    identifier, a primary)."""
    if dsn is not None:
        c = clusters.set_dsn(app.svc, name, dsn)
        click.echo(f"cluster {c.name} is now reached at {c.host}:{c.port} ({c.dsn})")
        if required_copies is None and active is None and archive_async is None:
            return
    r = clusters.set_options(
        app.svc, name, required_copies=required_copies, active=active, archive_async=archive_async
    )
    c = r.cluster
    click.echo(
        f"cluster {c.name}: required copies {c.required_copies}, active {c.active}, "
        f"archiving {'async' if c.archive_async else 'sync'}"
    )
    if r.archive_command is not None:
        click.echo(f"Set this in its postgresql.conf (a reload applies it):\n  {r.archive_command}")


@cluster.command("remove")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete its backups and WAL from the targets.")
@click.option("--yes", is_flag=True, help="Confirm --purge.")
@pass_app
def cluster_remove(app: AppContext, name: str, purge: bool, yes: bool) -> None:
    """Forget cluster NAME (refused while it has active placements); stored files stay
    unless --purge --yes."""
    r = clusters.remove(app.svc, name, purge=purge, yes=yes)
    if purge:
        where = ", ".join(f"{t}: {n} objects" for t, n in sorted(r.purged.items()))
        click.echo(f"cluster {r.cluster} removed; {r.backups_deleted} backups deleted; {where}")
    else:
        click.echo(f"cluster {r.cluster} removed (its files on the targets were left in place)")


@click.group()
def placement() -> None:
    """Which targets a cluster ships to, in priority order."""


@placement.command("add")
@click.argument("cluster_name", metavar="CLUSTER")
@click.argument("target_name", metavar="TARGET")
@click.option("--priority", type=int, required=True, help="Lower is tried first.")
@pass_app
def placement_add(app: AppContext, cluster_name: str, target_name: str, priority: int) -> None:
    """Ship CLUSTER's files to TARGET."""
    p = placements.add(app.svc, cluster_name, target_name, priority)
    click.echo(f"cluster {p.cluster} ships to {p.target} at priority {p.priority}")


@placement.command("list")
@click.argument("cluster_name", metavar="CLUSTER")
@json_opt
@pass_app
def placement_list(app: AppContext, cluster_name: str, as_json: bool) -> None:
    """List CLUSTER's placements, first tried first."""
    items = placements.list_placements(app.svc, cluster_name)
    if as_json:
        emit_json(items)
        return
    _placements_table(items)


@placement.command("remove")
@click.argument("cluster_name", metavar="CLUSTER")
@click.argument("target_name", metavar="TARGET")
@pass_app
def placement_remove(app: AppContext, cluster_name: str, target_name: str) -> None:
    """Stop shipping CLUSTER's files to TARGET (refused below the required copies). The
    files stored there stay."""
    p = placements.remove(app.svc, cluster_name, target_name)
    click.echo(f"cluster {p.cluster} no longer ships to {p.target} (its files there stay)")


@placement.command("set")
@click.argument("cluster_name", metavar="CLUSTER")
@click.argument("target_name", metavar="TARGET")
@click.option("--priority", type=int, help="Lower is tried first.")
@click.option("--active/--inactive", default=None, help="In service or out of it.")
@pass_app
def placement_set(
    app: AppContext,
    cluster_name: str,
    target_name: str,
    priority: int | None,
    active: bool | None,
) -> None:
    """Change a placement's priority, or take it out of (or back into) service."""
    p = placements.set_options(app.svc, cluster_name, target_name, priority=priority, active=active)
    click.echo(
        f"cluster {p.cluster} ships to {p.target} at priority {p.priority}"
        + ("" if p.active else " (inactive)")
    )


def _placements_table(items: list[Placement], title: str | None = None) -> None:
    emit_table(
        ["priority", "target", "url", "active"],
        [(p.priority, p.target, p.url, "yes" if p.active else "no") for p in items],
        title=title,
    )


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary folder for inspection.")
def demo(keep: bool) -> None:
    """Run the whole job on a throwaway cluster and clean up."""
    from pgharbor.demo import run_demo

    run_demo(keep)


def register(root: click.Group) -> None:
    for cmd in (init, target, cluster, placement, demo):
        root.add_command(cmd)
