"""Threshold ranges of the monitoring-plugins guidelines, with units (pure, no I/O).

A range is ``[@][start:][end]``: ``10`` alerts outside 0..10, ``10:`` below 10, ``~:10``
above 10, ``10:20`` outside 10..20, ``@10:20`` inside 10..20. nagiosplugin's ``Range``
does the matching; this module adds the units a check's metric is measured in, so that
``-w 15m`` means 900 seconds and ``-c 1GB`` 1073741824 bytes (sizes in PostgreSQL's
1024-based units), and per-metric lists (``-w waiting_age=15m,waiting_bytes=64MB``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from nagiosplugin import Range

from pgharbor.errors import UsageError

DURATIONS: dict[str, float] = {
    "": 1,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
}
DURATIONS["w"] = 7 * 86400
SIZES: dict[str, float] = {
    "": 1,
    "B": 1,
    "kB": 1024,
    "KB": 1024,
    "MB": 1024**2,
    "GB": 1024**3,
    "TB": 1024**4,
}
UNITS: dict[str, dict[str, float]] = {"s": DURATIONS, "B": SIZES, "%": {"": 1, "%": 1}, "": {"": 1}}
_ATOM = re.compile(r"^(-?(?:\d+(?:\.\d*)?|\.\d+))([A-Za-z%]*)$")


def number(atom: str, uom: str) -> float:
    """One end of a range in the metric's base unit: ``26h`` → 93600 for seconds."""
    m = _ATOM.match(atom.strip())
    scale = UNITS.get(uom, {"": 1})
    if not m or m[2] not in scale:
        allowed = ", ".join(repr(u) for u in scale if u) or "none"
        raise UsageError(f"bad threshold value {atom!r} (a number; units allowed: {allowed})")
    return float(m[1]) * scale[m[2]]


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def parse_range(spec: str, uom: str = "") -> Range:
    """A range in the metric's unit (``uom`` ``s``, ``B``, ``%`` or a count)."""
    text = spec.strip()
    invert = text.startswith("@")
    body = text[1:] if invert else text
    start_s, colon, end_s = body.rpartition(":") if ":" in body else ("", "", body)
    if not body or ":" in start_s:
        raise UsageError(f"bad threshold range {spec!r} (like 10, 10:, ~:10, 10:20, @10:20)")
    start = "~" if start_s == "~" else (_fmt(number(start_s, uom)) if start_s else "")
    end = _fmt(number(end_s, uom)) if end_s else ""
    if not colon and not end:
        raise UsageError(f"bad threshold range {spec!r}")
    try:
        return Range(f"{'@' if invert else ''}{start}{colon}{end}")
    except ValueError as exc:
        raise UsageError(f"bad threshold range {spec!r}: {exc}") from None


def alerts(rng: Range | None, value: float | None) -> bool:
    """Does ``value`` raise the alert of ``rng`` (no range, or an unknown value: no)?"""
    if rng is None or value is None or math.isnan(value):
        return False
    return not rng.match(value)


def split(spec: str | None, metrics: Sequence[str], primary: str) -> dict[str, str]:
    """``-w``/``-c`` text to a range per metric name: a bare range is the primary
    metric's; ``name=RANGE,name=RANGE`` names them."""
    if spec is None or not spec.strip():
        return {}
    if "=" not in spec:
        return {primary: spec.strip()}
    out: dict[str, str] = {}
    for part in spec.split(","):
        name, eq, rng = part.partition("=")
        name = name.strip()
        if not eq or name not in metrics:
            raise UsageError(
                f"bad threshold {part.strip()!r}: use RANGE or NAME=RANGE with NAME one of "
                + ", ".join(metrics)
            )
        out[name] = rng.strip()
    return out


def resolve(
    defaults: Mapping[str, str | None], given: Mapping[str, str], units: Mapping[str, str]
) -> dict[str, Range | None]:
    """The range of each metric: the one given, else its default (an empty string given
    switches a default off)."""
    out: dict[str, Range | None] = {}
    for name, default in defaults.items():
        spec = given.get(name, default)
        out[name] = parse_range(spec, units.get(name, "")) if spec else None
    return out
