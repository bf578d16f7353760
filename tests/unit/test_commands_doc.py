"""docs/commands.md has a synopsis for every command of the CLI, naming each option."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from pgharbor.cli import main as cli_main

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"
_CODE = re.compile(r"`([^`]+)`")


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*path, name))
        elif not command.hidden:
            yield " ".join((*path, name)), command


def synopses() -> list[str]:
    """Every code span of a heading or of a line of nothing but code spans, ``pgharbor`` and a
    group name added where the doc leaves them out (`target list` after `pgharbor target
    add`, as the headings write them)."""
    out: list[str] = []
    for line in DOC.read_text().splitlines():
        alone = line.startswith("`pgharbor") and not _CODE.sub("", line).strip(" ·")
        if not (line.startswith("## ") or alone):  # a heading, or a line of synopses only
            continue
        group = ""
        for span in _CODE.findall(line):
            words = span.removeprefix("pgharbor ").split()
            if span.startswith("pgharbor ") and words:
                group = words[0]
            elif words and group and not span.startswith("pgharbor"):
                span = f"{group} {span}" if words[0] != group else span
            out.append(span.removeprefix("pgharbor "))
    return out


def _commands() -> list[tuple[str, click.Command]]:
    cli_main._register()
    return list(leaves(cli_main.cli))


@pytest.mark.parametrize(("name", "command"), _commands(), ids=lambda v: str(v).replace(" ", "-"))
def test_every_command_has_a_synopsis_naming_its_options(name: str, command: click.Command) -> None:
    spans = [s for s in synopses() if s == name or s.startswith(name + " ")]
    assert spans, f"docs/commands.md has no synopsis for `pgharbor {name}`"
    text = " ".join(spans)
    for param in command.params:
        if isinstance(param, click.Option) and "--help" not in param.opts:
            names = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
            assert any(o in text for o in names), f"`pgharbor {name}`: {names[0]} not in {spans}"
