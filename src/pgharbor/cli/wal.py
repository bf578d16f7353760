"""wal commands. push and fetch (and the resident helpers) always run through entry.py's
lean path and its exit policy; these Click versions only serve --help, and hand over to
that same path if they are ever reached."""

from __future__ import annotations

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.render.output import emit_json, emit_table, fmt_bytes, fmt_time, to_jsonable
from pgharbor.services import wal as wal_service


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
    _hot(app, "push", (["--async"] if use_async else []) + [cluster, path])


@wal.command("fetch")
@click.option(
    "--strict", is_flag=True, help="Exit 99 (not 1) when no target has the file (for a wrapper)."
)
@click.argument("cluster")
@click.argument("name")
@click.argument("dest")
@pass_app
def wal_fetch(app: AppContext, strict: bool, cluster: str, name: str, dest: str) -> None:
    """Restore WAL file NAME to DEST. Use as restore_command = 'pgharbor … wal fetch CLUSTER %f %p'.
    Exit 1 when no target has it; in archive recovery any other failure exits 126."""
    _hot(app, "fetch", (["--strict"] if strict else []) + [cluster, name, dest])


def _hot(app: AppContext, verb: str, args: list[str]) -> None:
    from pgharbor.entry import run_hot

    opts = {k: v for k, v in (("catalog", app.catalog_opt), ("config", app.config_opt)) if v}
    code = run_hot(opts, verb, args)
    if code:
        raise click.exceptions.Exit(code)


@wal.command("list")
@click.argument("cluster")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def wal_list(app: AppContext, cluster: str, as_json: bool) -> None:
    """Every archived file of CLUSTER with its copies (and the placements missing one)."""
    files = wal_service.list_files(app.svc, cluster)
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
    from pgharbor.errors import PgharborError

    r = wal_service.sync(app.svc, cluster)
    if as_json:
        emit_json(r)
    else:
        copied = ", ".join(f"{t}: {n}" for t, n in sorted(r.copied.items())) or "nothing to copy"
        swept = f"; removed {r.swept} abandoned temporary objects" if r.swept else ""
        known = f"; recorded {r.recorded} stored copies the catalog lacked" if r.recorded else ""
        click.echo(f"{r.cluster}: {r.files} archived files; copied {copied}{swept}{known}")
        for line in r.unreachable + r.failed:
            click.echo(f"  not done: {line}", err=True)
    if r.failed or r.unreachable:
        raise PgharborError(
            f"{len(r.failed)} copies failed, {len(r.unreachable)} placements unreachable: run wal sync again"
        )


@wal.command("verify")
@click.argument("cluster")
@click.option(
    "--repair", is_flag=True, help="Copy each bad copy from a placement whose copy verified."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def wal_verify(app: AppContext, cluster: str, repair: bool, as_json: bool) -> None:
    """Read back every archived file of CLUSTER from every active placement and check it
    as a restore would; report missing and corrupt copies, and gaps per timeline."""
    from pgharbor.errors import IntegrityError

    report = wal_service.verify(app.svc, cluster, repair=repair)
    r, fixed = report.result, report.repair
    if as_json:
        emit_json({**to_jsonable(r), "repair": to_jsonable(fixed)})
    else:
        good = ", ".join(f"{t} {r.verified.get(t, 0)} good" for t in r.placements)
        click.echo(f"{r.cluster}: {r.files} archived files; {good}")
        for b in r.bad:
            click.echo(f"  {b.target}: {b.name}: {b.problem}")
        for g in r.gaps:
            click.echo(
                f"  gap on timeline {g.timeline}: {g.first}..{g.last} ({g.segments} segments "
                "with no good copy on any placement)"
            )
        for u in r.unreachable:
            click.echo(f"  unreachable: {u}")
        if fixed is not None:
            click.echo(f"repaired {len(fixed.repaired)} copies")
            for line in fixed.failed:
                click.echo(f"  not repaired: {line}")
    if not r.ok:
        raise IntegrityError(
            f"{cluster}: {len(r.bad)} bad copies, {len(r.gaps)} gaps, "
            f"{len(r.unreachable)} placements unreachable",
            hint=f"pgharbor wal verify {cluster} --repair copies each bad one from a good copy",
        )


def register(root: click.Group) -> None:
    root.add_command(wal)
