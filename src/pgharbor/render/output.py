"""One result model, many renderers: dataclasses to JSON or to a text table."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import click

from pgharbor.plain import Record


def to_jsonable(obj: Any) -> Any:
    """A result as JSON values: fields, and an ``ok`` the result computes (a verdict a
    JSON reader needs as much as the details behind it)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(getattr(type(obj), "ok", None), property):
            out["ok"] = getattr(obj, "ok")  # noqa: B009 - a property, checked above
        return out
    if isinstance(obj, Record):
        return {k: to_jsonable(v) for k, v in obj.as_dict().items()}
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return int(obj.total_seconds())  # a duration as seconds
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


def check_json(report: Any) -> dict[str, Any]:
    """``pgharbor check --json``'s document of a CheckReport (also the API's): the states
    by name, and each item's Nagios perfdata."""
    data: dict[str, Any] = to_jsonable(report)
    data["state"] = report.state.name
    for item, raw in zip(report.items, data["items"], strict=True):
        raw["state"] = item.state.name
        raw["perfdata"] = [m.perfdata() for m in item.metrics]
    return data


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=False))


def emit_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, title=title, box=box.SIMPLE_HEAD, show_edge=False)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 250
    console.print(table)


def fmt_time(dt: datetime | None) -> str:
    return "" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S%z")


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)
