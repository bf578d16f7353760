"""config commands: check the configuration, print a sample (see services/config.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pgharbor.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from pgharbor.services.config import ConfigCheck


@click.group()
def config() -> None:
    """The configuration: check it, print a commented sample."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def config_check(app: AppContext, as_json: bool) -> None:
    """Check the config file (--config / PGHARBOR_CONFIG) and the environment: every
    setting, every [targets.NAME] table against its target's backend (every backend's
    options when the catalog is not reachable) and every [clusters.NAME] table, its keys
    read. Exit 3 with one line naming the offending key. Secrets are never printed."""
    from pgharbor.services.config import check_config

    result = check_config(app.svc)
    if as_json:
        from pgharbor.render.output import emit_json

        emit_json(result)
    else:
        _render(result)


def _render(r: ConfigCheck) -> None:
    click.echo(
        f"config file {r.config_file}: valid"
        if r.config_file
        else "no config file: the defaults and the environment are valid"
    )
    if r.catalog:
        source = next(v.source for v in r.settings if v.name == "catalog")
        state = "reachable" if r.catalog_reachable else "not reachable"
        click.echo(f"catalog {r.catalog} (from {source}): {state}")
    changed = [v for v in r.settings if v.source != "default" and v.name != "catalog"]
    for v in changed:
        click.echo(f"  {v.name} = {v.value!r}  ({v.source})")
    for s in [*r.targets, *r.clusters]:
        what = []
        if s.backends:
            *first, last = s.backends
            what.append(f"backend {', '.join(first)} or {last}" if first else f"backend {last}")
        if s.options:
            what.append(", ".join(f"{k} = {v!r}" for k, v in s.options.items()))
        if s.keys:
            what.append(f"keys {'; '.join(s.keys)}")
        if s.encryption_required is not None:
            what.append(f"encryption {'required' if s.encryption_required else 'optional'}")
        note = f" ({s.note})" if s.note else ""
        click.echo(f"{s.section}: {' | '.join(what) or 'empty'}{note}")
    for note in r.notes:
        click.echo(f"note: {note}")


@config.command("sample")
def config_sample() -> None:
    """Print a commented config file (TOML) with every setting and its default, and
    example [targets.NAME] and [clusters.NAME] tables."""
    from pgharbor.services.config import sample_config

    click.echo(sample_config(), nl=False)


def register(root: click.Group) -> None:
    root.add_command(config)
