"""A check result as a monitoring plugin prints it (the monitoring-plugins guidelines):

    PGHARBOR_<SERVICE> <STATUS> - <text> | <perfdata>
    <long output: one line per cluster (with --all) or per service (check all)>

Perfdata are numeric, in base units (``s``, ``B``, ``%``, ``c``), ``U`` when unknown."""

from __future__ import annotations

from pgharbor.monitor.result import CheckReport, State


def prefix(service: str) -> str:
    return "PGHARBOR_" + service.upper().replace("-", "_")


def _clean(text: str) -> str:
    """Text never carries a ``|`` (it starts the perfdata) nor a line break."""
    return " ".join(text.replace("|", "/").split())


def lines(report: CheckReport) -> list[str]:
    perf = " ".join(m.perfdata() for i in report.items for m in i.metrics)
    head = f"{prefix(report.service)} {report.state.name} - {_clean(report.summary)}"
    out = [f"{head} | {perf}" if perf else head]
    if report.fleet:
        out += [f"{i.name}: {i.state.name} - {_clean(i.text)}" for i in report.items]
    return out


def unknown(service: str, message: str) -> list[str]:
    """The one line of a check that could not run (bad arguments, no catalog, ...)."""
    return [f"{prefix(service or 'check')} {State.UNKNOWN.name} - {_clean(message)}"]
