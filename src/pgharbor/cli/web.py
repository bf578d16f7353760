"""token create/list/revoke and user add/list/remove/passwd: the credentials of the web
API and the dashboard of ``pgharbor serve``. A token is printed once; a password is read
from a prompt or, with --password-stdin, from standard input (never an argument)."""

from __future__ import annotations

import sys

import click

from pgharbor.cli.context import AppContext, pass_app
from pgharbor.errors import UsageError
from pgharbor.render.output import emit_json, emit_table, fmt_time
from pgharbor.services import access_tokens, users
from pgharbor.services.audit import cli_actor

SCOPES = click.Choice(list(access_tokens.SCOPES))


@click.group("token")
def token_group() -> None:
    """API tokens (Authorization: Bearer TOKEN)."""


@token_group.command("create")
@click.argument("name")
@click.option("--scope", type=SCOPES, required=True, help="read, operate or admin.")
@click.option("--expires", metavar="DURATION", help="12h, 90d, 8w (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def token_create(
    app: AppContext, name: str, scope: str, expires: str | None, as_json: bool
) -> None:
    """Create token NAME: printed this once (the catalog keeps only its hash)."""
    made = access_tokens.create_token(app.svc, cli_actor(), name, scope, expires=expires)
    if as_json:
        emit_json(made)
        return
    click.echo(made.token)
    ends = fmt_time(made.info.expires_at) if made.info.expires_at else "never"
    click.echo(
        f"token {name}: scope {scope}, expires {ends}; store it now, it is not shown again",
        err=True,
    )


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def token_list(app: AppContext, as_json: bool) -> None:
    """Every token (never its secret)."""
    found = access_tokens.list_tokens(app.svc)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no tokens")
        return
    emit_table(
        ["name", "scope", "created", "by", "expires", "last used"],
        [
            (
                t.name,
                t.scope,
                fmt_time(t.created_at),
                t.created_by,
                ("expired " if t.expired else "") + (fmt_time(t.expires_at) or "never"),
                fmt_time(t.last_used_at) or "-",
            )
            for t in found
        ],
    )


@token_group.command("revoke")
@click.argument("name")
@pass_app
def token_revoke(app: AppContext, name: str) -> None:
    """Revoke token NAME: refused from now on."""
    access_tokens.revoke_token(app.svc, cli_actor(), name)
    click.echo(f"token {name} revoked")


@click.group("user")
def user_group() -> None:
    """Local users of the dashboard (passwords hashed with argon2id)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError(
            "no terminal to ask for the password", hint="pipe it in with --password-stdin"
        )
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


_stdin = click.option(
    "--password-stdin", "from_stdin", is_flag=True, help="Read the password from stdin."
)


@user_group.command("add")
@click.argument("name")
@click.option("--role", type=SCOPES, required=True, help="read, operate or admin.")
@_stdin
@pass_app
def user_add(app: AppContext, name: str, role: str, from_stdin: bool) -> None:
    """Add user NAME with a password (prompted, or --password-stdin)."""
    users.add_user(app.svc, cli_actor(), name, role, _password(from_stdin))
    click.echo(f"user {name} added ({role})")


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def user_list(app: AppContext, as_json: bool) -> None:
    """Every user and role."""
    found = users.list_users(app.svc)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no users")
        return
    emit_table(
        ["name", "role", "created", "changed"],
        [(u.name, u.role, fmt_time(u.created_at), fmt_time(u.modified_at)) for u in found],
    )


@user_group.command("remove")
@click.argument("name")
@pass_app
def user_remove(app: AppContext, name: str) -> None:
    """Remove user NAME (and end its sessions)."""
    users.remove_user(app.svc, cli_actor(), name)
    click.echo(f"user {name} removed")


@user_group.command("passwd")
@click.argument("name")
@_stdin
@pass_app
def user_passwd(app: AppContext, name: str, from_stdin: bool) -> None:
    """Set NAME's password (prompted, or --password-stdin); its sessions end."""
    users.set_password(app.svc, cli_actor(), name, _password(from_stdin))
    click.echo(f"password of {name} changed")


def register(root: click.Group) -> None:
    root.add_command(token_group)
    root.add_command(user_group)
