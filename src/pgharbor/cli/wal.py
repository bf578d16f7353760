"""wal commands. push and fetch normally run through entry.py's lean path; these Click
versions serve --help and give the same behaviour."""

from __future__ import annotations

import click

from pgharbor.cli.main import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_bytes, fmt_time


@click.group()
def wal() -> None:
    """WAL archiving: push (archive_command), fetch (restore_command), list."""


@wal.command("push")
@click.option(
    "--async",
    "use_async",
    is_flag=True,
    help="Confirm what the resident pusher archived ahead (starting it if needed).",
)
@click.argument("cluster")
@click.argument("path")
@pass_app
def wal_push(app: AppContext, use_async: bool, cluster: str, path: str) -> None:
    """Archive the WAL file at PATH. Use as archive_command = 'pgharbor … wal push CLUSTER %p'."""
    from pgharbor.archive import hotcli

    hotcli.run("push", app.settings, (["--async"] if use_async else []) + [cluster, path])


@wal.command("fetch")
@click.argument("cluster")
@click.argument("name")
@click.argument("dest")
@pass_app
def wal_fetch(app: AppContext, cluster: str, name: str, dest: str) -> None:
    """Restore WAL file NAME to DEST. Use as restore_command = 'pgharbor … wal fetch CLUSTER %f %p'.
    Exit 1 when no target has it."""
    from pgharbor.archive.hotcli import fetch_with_prefetch

    fetch_with_prefetch(app.settings, cluster, name, dest)


@wal.command("list")
@click.argument("cluster")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def wal_list(app: AppContext, cluster: str, as_json: bool) -> None:
    """Every archived file of CLUSTER with its copies (and the placements missing one)."""
    files = app.catalog().wal_files(cluster)
    if as_json:
        emit_json(files)
        return
    emit_table(
        ["name", "size", "copies", "missing", "archived"],
        [
            (
                f.name,
                fmt_bytes(f.size),
                ", ".join(
                    f"{c.target}({fmt_bytes(c.stored_size)})"
                    if c.status == "ok"
                    else f"{c.target}:{c.status}"
                    for c in f.copies
                ),
                ", ".join(f.missing),
                fmt_time(min(c.archived_at for c in f.copies)),
            )
            for f in files
        ],
    )
    click.echo(f"{len(files)} file(s); {sum(1 for f in files if f.missing)} with missing copies")


@wal.command("sync")
@click.argument("cluster")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def wal_sync(app: AppContext, cluster: str, as_json: bool) -> None:
    """Copy every archived file a placement of CLUSTER lacks from one that has it."""
    from pgharbor.archive.sync import sync
    from pgharbor.errors import PgharborError

    r = sync(app.settings, cluster)
    if as_json:
        emit_json(r)
    else:
        copied = ", ".join(f"{t}: {n}" for t, n in sorted(r.copied.items())) or "nothing to copy"
        swept = f"; removed {r.swept} abandoned temporary objects" if r.swept else ""
        click.echo(f"{r.cluster}: {r.files} archived files; copied {copied}{swept}")
        for line in r.unreachable + r.failed:
            click.echo(f"  not done: {line}", err=True)
    if r.failed or r.unreachable:
        raise PgharborError(
            f"{len(r.failed)} copies failed, {len(r.unreachable)} placements unreachable: run wal sync again"
        )


def register(root: click.Group) -> None:
    root.add_command(wal)
