"""The pgharbor command line (everything but the wal push/fetch hot path, see entry.py).

Commands parse arguments, call one service, render its result. Errors are
PgharborError: one line on stderr and the error's exit code, never a traceback.
"""

from __future__ import annotations

import logging
import os

import click

from pgharbor import __version__
from pgharbor.cli.context import AppContext
from pgharbor.errors import PgharborError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--catalog",
    envvar="PGHARBOR_CATALOG",
    help="Catalog URL (sqlite:////path.db or postgresql://…).",
)
@click.option("--config", envvar="PGHARBOR_CONFIG", help="Config file (TOML).", type=click.Path())
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.version_option(__version__, prog_name="pgharbor")
@click.pass_context
def cli(ctx: click.Context, catalog: str | None, config: str | None, verbose: bool) -> None:
    """pgharbor: central WAL archive and point-in-time recovery for PostgreSQL fleets."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="pgharbor: %(message)s"
    )
    ctx.obj = AppContext(catalog, config)


def _register() -> None:
    from pgharbor.cli import (
        backup,
        catalog,
        check,
        config,
        drill,
        events,
        fleet,
        key,
        restore,
        restore_point,
        retention,
        schedule,
        status,
        verification,
        wal,
        web,
    )

    fleet.register(cli)
    status.register(cli)
    wal.register(cli)
    verification.register(cli)
    backup.register(cli)
    retention.register(cli)
    schedule.register(cli)
    restore.register(cli)
    restore_point.register(cli)
    key.register(cli)
    config.register(cli)
    catalog.register(cli)
    check.register(cli)
    events.register(cli)
    drill.register(cli)
    web.register(cli)


def _in_check(exc: click.ClickException) -> bool:
    ctx = getattr(exc, "ctx", None)
    return ctx is not None and ctx.command.name == "check"


def run(argv: list[str]) -> int:
    _register()
    try:
        code = cli.main(args=argv, prog_name="pgharbor", standalone_mode=False)
        if isinstance(code, int):  # a command's click.exceptions.Exit(code)
            return code
    except PgharborError as exc:
        click.echo(exc.line(), err=True)
        return exc.code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        if _in_check(exc):  # a monitoring plugin: bad arguments are UNKNOWN, on stdout
            from pgharbor.render.nagios import unknown

            click.echo("\n".join(unknown("check", exc.format_message())))
            return 3
        click.echo(f"pgharbor: error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("pgharbor: aborted", err=True)
        return 1
    except BrokenPipeError:
        return 1
    except SystemExit as exc:  # Click's answer to EPIPE (`pgharbor … | grep -q`), also
        return exc.code if isinstance(exc.code, int) else 1  # with standalone_mode=False
    except BaseException as exc:  # one line, never a traceback (PGHARBOR_DEBUG=1 shows it)
        from pgharbor.errors import error_line, exit_code

        click.echo(error_line(exc), err=True)
        if os.environ.get("PGHARBOR_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        return exit_code(exc)
    return 0
