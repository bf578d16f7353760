"""init, target, cluster and placement commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pgharbor.cli.main import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_bytes, fmt_time

if TYPE_CHECKING:
    from pgharbor.model import Cluster, Placement, Target

json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# What listings show: a URL or DSN stored before credentials were refused is redacted
# (text and JSON alike), so no listing ever prints a password or a secret key.
def _shown_target(t: Target) -> Target:
    from pgharbor.storage.factory import shown_url

    return t.replace(url=shown_url(t.url))


def _shown_placement(p: Placement) -> Placement:
    from pgharbor.storage.factory import shown_url

    return p.replace(url=shown_url(p.url))


def _shown_cluster(c: Cluster) -> Cluster:
    from pgharbor.catalog.urls import redact_conninfo

    return c.replace(dsn=redact_conninfo(c.dsn))


@click.command()
@pass_app
def init(app: AppContext) -> None:
    """Create the catalog, or upgrade its schema. Safe to run twice."""
    from pgharbor.catalog import db

    engine, cu = db.make_engine(
        app.settings.require_catalog(), timeout=app.settings.catalog_timeout
    )
    before, after = db.migrate(engine, cu)
    if before == after:
        click.echo(f"catalog {cu.display()} is up to date (schema revision {after})")
    else:
        click.echo(
            f"catalog {cu.display()} upgraded: schema revision {before or 'none'} -> {after}"
        )


@click.group()
def target() -> None:
    """Archive targets (file://, ssh://, s3://)."""


@target.command("add")
@click.argument("name")
@click.argument("url")
@pass_app
def target_add(app: AppContext, name: str, url: str) -> None:
    """Register target NAME at URL."""
    from pgharbor.fleet import add_target

    t = add_target(app.catalog(), app.settings, name, url)
    click.echo(f"target {t.name} added ({t.url})")


@target.command("list")
@json_opt
@pass_app
def target_list(app: AppContext, as_json: bool) -> None:
    """List targets."""
    items = [_shown_target(t) for t in app.catalog().targets()]
    if as_json:
        emit_json(items)
    else:
        emit_table(
            ["name", "url", "active", "created"],
            [(t.name, t.url, "yes" if t.active else "no", fmt_time(t.created_at)) for t in items],
        )


@target.command("remove")
@click.argument("name")
@pass_app
def target_remove(app: AppContext, name: str) -> None:
    """Remove target NAME (refused while a placement uses it). Stored files stay."""
    app.catalog().remove_target(name)
    click.echo(f"target {name} removed (files stored on it were left in place)")


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
@click.pass_context
def cluster_add(
    ctx: click.Context,
    name: str,
    dsn: str,
    idc: str,
    platform: str,
    required_copies: int,
    archive_async: bool,
) -> None:
    """Register the running cluster reachable at DSN as NAME."""
    from pgharbor.fleet import register_cluster

    app: AppContext = ctx.obj
    catalog_given = ctx.find_root().params.get("catalog") is not None
    reg = register_cluster(
        app.catalog(),
        app.settings,
        name,
        dsn,
        idc=idc,
        platform=platform,
        required_copies=required_copies,
        catalog_given=catalog_given,
        archive_async=archive_async,
    )
    c = reg.cluster
    click.echo(
        f"cluster {c.name} registered: id {c.id}, system identifier {c.system_identifier}, "
        f"PostgreSQL {c.version}, WAL segment {fmt_bytes(c.wal_segment_size)}"
        + (" (kept the id found in its fingerprint)" if reg.adopted_fingerprint else "")
    )
    if required_copies > 1:
        click.echo(
            f"note: a WAL file counts as archived once {required_copies} targets hold it: "
            f"add {required_copies} placements (pgharbor placement add) before archive_mode "
            "is on (cluster set refuses more required copies than active placements)"
        )
    click.echo("Put these lines in its postgresql.conf (archive_mode = on):")
    click.echo(f"  {reg.archive_command}")
    click.echo(f"  {reg.restore_command}")


@cluster.command("list")
@json_opt
@pass_app
def cluster_list(app: AppContext, as_json: bool) -> None:
    """List clusters."""
    items = [_shown_cluster(c) for c in app.catalog().clusters()]
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
    cat = app.catalog()
    c = _shown_cluster(cat.cluster(name))
    places = [_shown_placement(p) for p in cat.placements(name)]
    if as_json:
        emit_json({**c.as_dict(), "placements": places})
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
    emit_table(
        ["priority", "target", "url", "active"],
        [(p.priority, p.target, p.url, "yes" if p.active else "no") for p in places],
        title="placements",
    )


@cluster.command("set")
@click.argument("name")
@click.option("--required-copies", type=int, help="Copies required before a WAL file counts.")
@click.option("--active/--inactive", default=None, help="Archive this cluster or refuse to.")
@click.option(
    "--async/--sync",
    "archive_async",
    default=None,
    help="Async archiving (a resident pusher works ahead) or sync.",
)
@click.pass_context
def cluster_set(
    ctx: click.Context,
    name: str,
    required_copies: int | None,
    active: bool | None,
    archive_async: bool | None,
) -> None:
    """Change a cluster's settings."""
    from pgharbor.fleet import command_lines

    app: AppContext = ctx.obj
    values: dict[str, object] = {}
    if required_copies is not None:
        values["required_copies"] = required_copies
    if active is not None:
        values["active"] = active
    if archive_async is not None:
        values["archive_async"] = archive_async
    if not values:
        raise click.UsageError(
            "nothing to change: give --required-copies, --active/--inactive or --async/--sync"
        )
    c = app.catalog().update_cluster(name, **values)
    click.echo(
        f"cluster {c.name}: required copies {c.required_copies}, active {c.active}, "
        f"archiving {'async' if c.archive_async else 'sync'}"
    )
    if archive_async is not None:
        archive, _ = command_lines(
            app.settings, c, ctx.find_root().params.get("catalog") is not None
        )
        click.echo(f"Set this in its postgresql.conf (a reload applies it):\n  {archive}")


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
    from pgharbor.fleet import add_placement

    p = add_placement(app.catalog(), app.settings, cluster_name, target_name, priority)
    click.echo(f"cluster {p.cluster} ships to {p.target} at priority {p.priority}")


@placement.command("list")
@click.argument("cluster_name", metavar="CLUSTER")
@json_opt
@pass_app
def placement_list(app: AppContext, cluster_name: str, as_json: bool) -> None:
    """List CLUSTER's placements, first tried first."""
    items = [_shown_placement(p) for p in app.catalog().placements(cluster_name)]
    if as_json:
        emit_json(items)
        return
    emit_table(
        ["priority", "target", "url", "active"],
        [(p.priority, p.target, p.url, "yes" if p.active else "no") for p in items],
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
