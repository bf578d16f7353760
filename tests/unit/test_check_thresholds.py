"""Threshold ranges by the monitoring-plugins guidelines, with units, and the plugin
output grammar (status line, perfdata) of rendered check results."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgharbor.errors import UsageError
from pgharbor.monitor.result import CheckReport, Item, Metric, State, worst
from pgharbor.monitor.thresholds import alerts, number, parse_range, resolve, split
from pgharbor.render import nagios

# (range, unit, value, alerts?)
CASES = [
    ("10", "", 0, False),
    ("10", "", 10, False),
    ("10", "", 11, True),
    ("10", "", -1, True),
    ("10:", "", 10, False),
    ("10:", "", 9.5, True),
    ("10:", "", 1e12, False),
    ("~:10", "", -1e12, False),
    ("~:10", "", 10.5, True),
    ("10:20", "", 15, False),
    ("10:20", "", 9, True),
    ("10:20", "", 21, True),
    ("@10:20", "", 15, True),
    ("@10:20", "", 10, True),
    ("@10:20", "", 21, False),
    ("15m", "s", 900, False),
    ("15m", "s", 901, True),
    ("26h", "s", 93601, True),
    ("1d:", "s", 86399, True),
    ("64MB", "B", 64 * 1024**2, False),
    ("64MB", "B", 64 * 1024**2 + 1, True),
    ("1GB", "B", 1024**3 + 1, True),
    ("16kB:", "B", 16383, True),
    ("20%:", "%", 19.9, True),
    ("20:", "%", 20, False),
    ("0", "", 0, False),
    ("0", "", 1, True),
    ("1:", "", 0, True),
]


@pytest.mark.parametrize(("spec", "uom", "value", "alert"), CASES)
def test_ranges_alert_as_the_guidelines_say(spec: str, uom: str, value: float, alert: bool) -> None:
    assert alerts(parse_range(spec, uom), value) is alert


@pytest.mark.parametrize(
    ("spec", "uom", "shown"),
    [
        ("15m", "s", "900"),
        ("64MB", "B", "67108864"),
        ("10:", "", "10:"),
        ("~:1h", "s", "~:3600"),
        ("@1:2", "", "@1:2"),
        ("0.5", "", "0.5"),
        ("1:", "", "1:"),
    ],
)
def test_a_range_is_shown_in_base_units(spec: str, uom: str, shown: str) -> None:
    assert str(parse_range(spec, uom)) == shown


@pytest.mark.parametrize(
    ("spec", "uom"),
    [
        ("", ""),
        ("abc", ""),
        ("10x", "s"),
        ("10MB", "s"),
        ("1h", "B"),
        ("5:1", ""),
        ("1:2:3", ""),
        ("@", ""),
        ("10s", ""),
        ("~", ""),
    ],
)
def test_bad_ranges_are_usage_errors(spec: str, uom: str) -> None:
    with pytest.raises(UsageError):
        parse_range(spec, uom)


def test_no_range_or_an_unknown_value_never_alerts() -> None:
    assert not alerts(None, 5) and not alerts(parse_range("1"), None)
    assert not alerts(parse_range("1"), float("nan"))


def test_thresholds_name_metrics_or_the_primary_one() -> None:
    names = ["age", "bytes"]
    assert split("15m", names, "age") == {"age": "15m"}
    assert split("age=1h, bytes=64MB", names, "age") == {"age": "1h", "bytes": "64MB"}
    assert split(None, names, "age") == {}
    with pytest.raises(UsageError, match="one of age, bytes"):
        split("size=1", names, "age")
    got = resolve({"age": "15m", "bytes": "1GB"}, {"bytes": ""}, {"age": "s", "bytes": "B"})
    assert got["bytes"] is None and str(got["age"]) == "900"


@st.composite
def ranges(draw: st.DrawFn) -> tuple[str, bool, float, float]:
    lo = draw(st.integers(-1000, 1000))
    hi = draw(st.integers(lo, 1001))
    kind = draw(st.sampled_from(["end", "start:", "~:end", "start:end"]))
    invert = draw(st.booleans())
    start, end = {
        "end": (0, hi),
        "start:": (lo, float("inf")),
        "~:end": (float("-inf"), hi),
        "start:end": (lo, hi),
    }[kind]
    if kind == "end" and hi < 0:
        hi, end = 0, 0
    text = kind.replace("start", str(lo)).replace("end", str(hi))
    return ("@" if invert else "") + text, invert, start, end


@given(ranges(), st.floats(-2000, 2000, allow_nan=False))
def test_ranges_match_the_definition(r: tuple[str, bool, float, float], value: float) -> None:
    spec, invert, start, end = r
    inside = start <= value <= end
    assert alerts(parse_range(spec), value) is (inside if invert else not inside)


@given(st.integers(0, 10**6), st.sampled_from(["s", "m", "h", "d"]))
def test_durations_scale_to_seconds(n: int, unit: str) -> None:
    assert number(f"{n}{unit}", "s") == n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


_LINE = re.compile(r"^PGHARBOR_[A-Z_]+ (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| (\S+( \S+)*))?$")
_PERF = re.compile(r"^[A-Za-z0-9_]+=(-?[0-9.]+(s|B|%|c)?|U)(;[^; ]*){0,4}$")


def test_rendered_output_follows_the_plugin_grammar() -> None:
    items = [
        Item(
            "c1",
            State.OK,
            "fine",
            [Metric("c1_age", 12.5, "s", "900", "3600"), Metric("c1_bytes", None, "B")],
        ),
        Item("c2", State.CRITICAL, "bad | really\nbad", [Metric("c2_n", 3, "c")]),
    ]
    report = CheckReport("replication-lag", worst(i.state for i in items), "1 of 2", items, True)
    out = nagios.lines(report)
    assert _LINE.match(out[0]), out[0]
    assert out[0].startswith("PGHARBOR_REPLICATION_LAG CRITICAL - 1 of 2 | ")
    perf = out[0].split(" | ", 1)[1].split()
    assert perf == ["c1_age=12.5s;900;3600;0", "c1_bytes=U;;;0", "c2_n=3c;;;0"]
    assert all(_PERF.match(p) for p in perf)
    assert out[1:] == ["c1: OK - fine", "c2: CRITICAL - bad / really bad"]


def test_the_worst_state_wins_critical_then_unknown_then_warning() -> None:
    assert worst([State.OK, State.WARNING, State.UNKNOWN]) is State.UNKNOWN
    assert worst([State.UNKNOWN, State.CRITICAL]) is State.CRITICAL
    assert worst([]) is State.OK
