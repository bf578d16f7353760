"""key commands: make and identify encryption keys (see pgharbor.crypto)."""

from __future__ import annotations

import click


@click.group()
def key() -> None:
    """Encryption keys: generate one, show a key file's id."""


@key.command("generate")
@click.argument("file", type=click.Path(dir_okay=False))
def key_generate(file: str) -> None:
    """Write a new random key to FILE (mode 0600; an existing file is never replaced).
    Use it with encryption_key_file in the config file; keep a copy somewhere safe:
    without it, what was encrypted with it cannot be read."""
    from pgharbor.crypto import generate_key_file

    k = generate_key_file(file)
    click.echo(f"wrote {file} (key id {k.id})")


@key.command("id")
@click.argument("file", type=click.Path(dir_okay=False))
def key_id(file: str) -> None:
    """Print the id of the key in FILE, as stored objects and error messages name it."""
    from pgharbor.crypto import read_key_file

    click.echo(read_key_file(file, "the command line").id)


def register(root: click.Group) -> None:
    root.add_command(key)
