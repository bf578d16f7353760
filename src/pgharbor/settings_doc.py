"""The settings declarations (pgharbor.settings_spec) rendered for people: the commented
sample config of ``pgharbor config sample`` and the reference docs/configuration.md.

``python -m pgharbor.settings_doc > docs/configuration.md`` regenerates the reference (a
unit test fails when the committed file differs).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pgharbor.settings_check import describe_range, format_size
from pgharbor.settings_spec import (
    BACKENDS,
    CLUSTER,
    DOCUMENTED_BACKENDS,
    ENCRYPTION,
    OTHER_ENV,
    SETTINGS,
    SIZE,
    Key,
)

_BACKEND_TITLES = {
    "file": "file:// targets (a local disk or an NFS mount)",
    "ssh": "ssh:// targets (SFTP)",
    "s3": "s3:// targets (S3 and S3-compatible stores)",
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _default(key: Key, code: str = "") -> str:
    """The default as the reference (``code="`"``) or the sample shows it."""
    if key.default is None:
        return key.default_doc or "unset"
    shown = format_size(key.default) if key.kind == SIZE else toml_value(key.default)
    shown = f"{code}{shown}{code}"
    return f"{key.default_doc} ({shown})" if key.default_doc else shown


def _md(text: str) -> str:
    return text.replace("*", "\\*")


def _fill(*paragraph: str) -> str:
    return textwrap.fill(" ".join(paragraph), 90, break_on_hyphens=False)


def _facts(key: Key) -> str:
    """ "number, 0.1 to 600; env PGHARBOR_CATALOG_TIMEOUT" and the like."""
    facts = [key.kind]  # a list of facts, joined by "; "
    if describe_range(key):
        facts.append(describe_range(key))
    if key.default is None or key.default_doc:
        facts.append(f"default: {_default(key)}")
    if key.secret:
        facts.append("secret, never shown")
    if key.env:
        facts.append(f"env {key.env}")
    return "; ".join(facts)


def _sample_keys(keys: Iterable[Key], *, commented: bool) -> Iterator[str]:
    for key in keys:
        value = key.example if key.default is None else key.default
        shown = json.dumps(format_size(value)) if key.kind == SIZE else toml_value(value)
        line = f"{key.name} = {shown}"
        yield from textwrap.wrap(
            f"{key.doc} [{_facts(key)}]", 88, initial_indent="# ", subsequent_indent="#   "
        )
        yield f"# {line}" if commented or key.default is None else line


def sample_toml() -> str:
    """A config file with every key: each top-level setting at its default (those
    without one commented out, with an example), then commented example tables."""
    lines = [
        "# pgharbor configuration (TOML): every setting with its default.",
        "# Reference: docs/configuration.md. Check a file with: pgharbor config check",
        "# Precedence: defaults < this file < environment (PGHARBOR_<NAME>) < --catalog.",
        "# Keep the file mode 0600 when it holds a secret (S3 credentials, a password).",
        "",
    ]
    for key in SETTINGS.values():
        lines += [*_sample_keys([key], commented=False), ""]
    lines += [
        "# Per-target settings, never stored in the catalog: [targets.NAME], NAME as in",
        "# `pgharbor target add NAME URL`. The options depend on the target's backend; the",
        "# non-secret ones may also be given in the target URL's query string.",
        "",
    ]
    for scheme in DOCUMENTED_BACKENDS:
        lines.append(f"# {'A' if scheme == 'file' else 'An'} {scheme}:// target:")
        lines += ["# [targets.NAME]", *_sample_keys(BACKENDS[scheme].values(), commented=True)]
        lines.append("")
    lines += [
        "# Encryption at rest, per cluster (and optionally in a [targets.NAME] table: the",
        "# target's key then encrypts what is written there). See docs/commands.md.",
        "# [clusters.NAME]",
        *_sample_keys(CLUSTER.values(), commented=True),
    ]
    return "\n".join(lines) + "\n"


def _table(keys: Mapping[str, Key], *, url: bool = False) -> list[str]:
    head = ["key", "type", "default", "range", "meaning"]
    if url:
        head.insert(4, "URL query")
    if any(k.env for k in keys.values()):
        head.insert(4, "environment")
    rows = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for k in keys.values():
        cells = [f"`{k.name}`", k.kind, _md(_default(k, "`")), describe_range(k)]
        if any(x.env for x in keys.values()):
            cells.append(f"`{k.env}`" if k.env else "")
        if url:
            cells.append("yes" if k.in_url else "no (a credential)" if k.secret else "no")
        doc = _md(k.doc) + (" — **secret**: never shown" if k.secret else "")
        rows.append(f"| {' | '.join([*cells, doc])} |")
    return rows


def reference_markdown() -> str:
    """docs/configuration.md."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from src/pgharbor/settings_spec.py by"
        " `python -m pgharbor.settings_doc > docs/configuration.md`:",
        "     do not edit by hand (a unit test compares). -->",
        "",
        _fill(
            "pgharbor reads a TOML file (`--config FILE` or `PGHARBOR_CONFIG`) and the",
            "environment. Precedence: defaults < config file < environment < `--catalog`.",
            "Values are type-checked, never coerced: an integer setting takes `3`, not `3.9`,",
            '`true` or `"3"`; from the environment, their text (`PGHARBOR_COMPRESSION_LEVEL=3`).',
            "A wrong, unknown or out-of-range value is one error line naming the key and the",
            "file or variable it came from (exit 3). `pgharbor config check` checks a whole",
            "configuration; `pgharbor config sample` prints a commented file with every key",
            "and its default (see [commands.md](commands.md)).",
        ),
        "",
        "## Top-level settings",
        "",
        *_table(SETTINGS),
        "",
        _fill(
            "Other environment variables:",
            "; ".join(f"`{name}`: {doc}" for name, doc in OTHER_ENV.items()) + ".",
        ),
        "",
        "## `[targets.NAME]`: per-target settings",
        "",
        _fill(
            "Never stored in the catalog; from the config file only. The options depend on",
            "the backend of the target's URL: an option of another backend, a misspelt one or",
            "a wrong value fails that target's operations (its copy of a WAL file, say) with",
            "one error naming the target, the key and the file. Options marked *URL query*",
            "may also be given in the target URL (`?timeout=5`): the table wins over the URL,",
            "and the URL over `target_timeout`. Credentials are refused in a URL.",
        ),
        "",
    ]
    for scheme in DOCUMENTED_BACKENDS:
        out += [f"### {_BACKEND_TITLES[scheme]}", "", *_table(BACKENDS[scheme], url=True), ""]
    out += [
        "### Encryption keys of a target",
        "",
        _fill(
            "The keys of `[clusters.NAME]` below may also be set in a target's table: that",
            "key then encrypts what is written to the target, and every key of both tables",
            "can read.",
        ),
        "",
        "## `[clusters.NAME]`: per-cluster settings",
        "",
        _fill(
            "From the config file only. A key that is not one of these is refused (a",
            "misspelt encryption key must not leave a cluster unencrypted).",
        ),
        "",
        *_table(ENCRYPTION),
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_markdown(), end="")
