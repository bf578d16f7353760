"""The check services and how one is run over a cluster or the fleet.

A service is one function registered with :func:`service`, in one of the modules of
:data:`MODULES`; it gets a :class:`Probe` (the services, the thresholds, the item to
fill) and the cluster. Adding a service is a module with one decorated function and
its name in MODULES — ``all`` picks it up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nagiosplugin import Range

from pgharbor.errors import PgharborError, UsageError
from pgharbor.model import Cluster
from pgharbor.monitor import thresholds
from pgharbor.monitor.result import CheckReport, Item, Metric, State, judge, worst
from pgharbor.services.context import Services

MODULES = (
    "pgharbor.monitor.archive",
    "pgharbor.monitor.replication",
    "pgharbor.monitor.fleet",
    "pgharbor.monitor.gaps",
    "pgharbor.monitor.scheduler",
    "pgharbor.monitor.drill",
)


@dataclass(frozen=True)
class MetricSpec:
    """A metric thresholds can name: its unit and default -w/-c ranges."""

    name: str
    uom: str = ""
    warn: str | None = None
    crit: str | None = None
    doc: str = ""


@dataclass
class Probe:
    """What a check function gets, and fills in."""

    svc: Services
    limits: dict[str, tuple[Range | None, Range | None]]
    units: dict[str, str]
    item: Item
    window: float = 3600.0
    cache: dict[str, Any] = field(default_factory=dict)  # shared by a run's items
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def measure(
        self,
        metric: str,
        value: float | None,
        label: str | None = None,
        *,
        uom: str | None = None,
        min: float | None = 0,
        max: float | None = None,
    ) -> State:
        """Record a perfdata value under ``label`` (default: the metric's name), judged
        by the metric's thresholds; raise the item's state with it."""
        warn, crit = self.limits.get(metric, (None, None))
        state = judge(value, warn, crit)
        unit = self.units.get(metric, "") if uom is None else uom
        w, c = ("" if r is None else str(r) for r in (warn, crit))
        self.item.metrics.append(Metric(label or metric, value, unit, w, c, min, max))
        self.item.raise_to(state)
        return state

    def problem(self, state: State, text: str) -> None:
        self.item.raise_to(state, text)


CheckFn = Callable[[Probe, Cluster], str]


@dataclass(frozen=True)
class Service:
    name: str
    fn: CheckFn
    metrics: tuple[MetricSpec, ...]
    doc: str

    def limits(
        self, warn: str | None, crit: str | None
    ) -> dict[str, tuple[Range | None, Range | None]]:
        names = [m.name for m in self.metrics]
        primary = names[0] if names else ""
        units = {m.name: m.uom for m in self.metrics}
        if not names and (warn or crit):
            raise UsageError(f"check {self.name} takes no thresholds")
        w = thresholds.resolve(
            {m.name: m.warn for m in self.metrics}, thresholds.split(warn, names, primary), units
        )
        c = thresholds.resolve(
            {m.name: m.crit for m in self.metrics}, thresholds.split(crit, names, primary), units
        )
        return {n: (w[n], c[n]) for n in names}


SERVICES: dict[str, Service] = {}


def service(name: str, doc: str, *metrics: MetricSpec) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        SERVICES[name] = Service(name, fn, metrics, doc)
        return fn

    return register


def services() -> dict[str, Service]:
    for module in MODULES:
        importlib.import_module(module)
    return SERVICES


def _check(probe: Probe, spec: Service, cluster: Cluster) -> Item:
    try:
        text = spec.fn(probe, cluster)
    except PgharborError as exc:
        probe.problem(State.UNKNOWN, exc.message)
        text = exc.message
    except Exception as exc:  # one cluster's failure is that cluster's UNKNOWN
        probe.problem(State.UNKNOWN, f"{type(exc).__name__}: {exc}")
        text = f"could not check: {type(exc).__name__}: {exc}"
    item = probe.item
    others = [p for p in item.problems if p != text]
    item.text = "; ".join([*others, text])
    return item


def _prefixed(item: Item, prefix: str) -> Item:
    item.metrics = [
        Metric(f"{prefix}_{m.label}", m.value, m.uom, m.warn, m.crit, m.min, m.max)
        for m in item.metrics
    ]
    return item


def run_check(
    svc: Services,
    name: str,
    cluster: str | None,
    *,
    fleet: bool = False,
    warn: str | None = None,
    crit: str | None = None,
    window: float = 3600.0,
    record: bool = True,
) -> CheckReport:
    """Run service ``name`` (or ``all``) on ``cluster`` or, with ``fleet``, every cluster.
    With ``record`` and the default thresholds, each (cluster, service) state is kept in
    the catalog and a change is written as an event (monitor/events.py)."""
    known = services()
    if name != "all" and name not in known:
        raise UsageError(f"no such check {name!r} (one of: {', '.join([*known, 'all'])})")
    if bool(cluster) == fleet:
        raise UsageError("name a CLUSTER or give --all (not both)")
    if name == "all" and (warn or crit):
        raise UsageError("check all runs every service with its defaults: no -w/-c")
    chosen = list(known.values()) if name == "all" else [known[name]]
    limits = {s.name: s.limits(warn, crit) for s in chosen}
    # --all: the active clusters (one taken out of service is not watched)
    everyone = svc.catalog.clusters() if fleet else [svc.catalog.cluster(cluster or "")]
    clusters = [c for c in everyone if c.active or not fleet]
    cache: dict[str, Any] = {}
    items: list[Item] = []
    judged: list[tuple[Cluster, str, Item]] = []
    try:
        _run(svc, name, fleet, chosen, limits, clusters, window, cache, items, judged)
    finally:
        for conn in cache.pop("close", []):
            conn.close()
    if record and not (warn or crit):  # other thresholds would make the states flap
        from pgharbor.monitor import events

        events.note_checks(svc, judged)
    state = worst(i.state for i in items)
    many = fleet or name == "all"
    return CheckReport(name, state, _summary(items, state, many), items, many)


def _run(
    svc: Services,
    name: str,
    fleet: bool,
    chosen: list[Service],
    limits: dict[str, dict[str, tuple[Range | None, Range | None]]],
    clusters: list[Cluster],
    window: float,
    cache: dict[str, Any],
    items: list[Item],
    judged: list[tuple[Cluster, str, Item]],
) -> None:
    for c in clusters:
        for spec in chosen:
            label = c.name if name != "all" else f"{c.name} {spec.name}"
            units = {m.name: m.uom for m in spec.metrics}
            probe = Probe(svc, limits[spec.name], units, Item(label), window, cache)
            item = _check(probe, spec, c)
            judged.append((c, spec.name, item))
            parts = (c.name if fleet else "", spec.name if name == "all" else "")
            prefix = "_".join(p for p in parts if p).replace("-", "_")
            items.append(_prefixed(item, prefix) if prefix else item)


def _summary(items: list[Item], state: State, many: bool) -> str:
    if not many:
        return items[0].text if items else "nothing to check"
    if not items:
        return "no clusters in the catalog"
    bad = [i for i in items if i.state is not State.OK]
    if not bad:
        return f"{len(items)} checked, all OK"
    return f"{len(bad)} of {len(items)} with issues: " + ", ".join(
        f"{i.name} {i.state.name}" for i in bad
    )
