"""The result model of a check: states, metrics (perfdata), one item per cluster."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import IntEnum

from nagiosplugin import Performance, Range

from pgharbor.monitor.thresholds import alerts


class State(IntEnum):
    """The plugin exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


#: "Worst state wins": CRITICAL, then UNKNOWN (something could not be checked), then
#: WARNING, then OK — the order Icinga sorts problems by.
SEVERITY = {State.OK: 0, State.WARNING: 1, State.UNKNOWN: 2, State.CRITICAL: 3}


def worst(states: Iterable[State]) -> State:
    return max(states, key=SEVERITY.__getitem__, default=State.OK)


def dur(seconds: float | timedelta) -> str:
    """A duration for the text: ``42s``, ``16.5m``, ``2.1h``, ``3.0d``."""
    s = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.1f}{unit}"
    return f"{s:.0f}s"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


@dataclass(frozen=True)
class Metric:
    """One perfdata value in its base unit (``uom`` ``s``, ``B``, ``%``, ``c`` or ``""``);
    ``value`` None is printed as ``U`` (could not be determined)."""

    label: str
    value: float | None
    uom: str = ""
    warn: str = ""
    crit: str = ""
    min: float | None = 0
    max: float | None = None

    def perfdata(self) -> str:
        value = "U" if self.value is None else _num(self.value)
        lo, hi = (
            None if v is None else int(v) if float(v).is_integer() else v
            for v in (self.min, self.max)
        )
        uom = "" if self.value is None else self.uom
        return str(Performance(self.label, value, uom, self.warn, self.crit, lo, hi))


def judge(value: float | None, warn: Range | None, crit: Range | None) -> State:
    if alerts(crit, value):
        return State.CRITICAL
    if alerts(warn, value):
        return State.WARNING
    return State.OK


@dataclass
class Item:
    """The check of one cluster (or one cluster's service, for ``all``)."""

    name: str
    state: State = State.OK
    text: str = ""
    metrics: list[Metric] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def raise_to(self, state: State, problem: str | None = None) -> None:
        self.state = worst([self.state, state])
        if problem and state is not State.OK:
            self.problems.append(problem)


@dataclass
class CheckReport:
    """What ``pgharbor check`` prints: the worst state of its items wins."""

    service: str
    state: State
    summary: str
    items: list[Item] = field(default_factory=list)
    fleet: bool = False  # --all: one long-output line per item

    @property
    def ok(self) -> bool:
        return self.state is State.OK
