"""A job whose run finished but reported trouble (``ok: false`` in its result) is
recorded as failed, with the whole result kept; any other result is a success."""

from __future__ import annotations

from dataclasses import dataclass

from pgharbor.render.output import to_jsonable
from pgharbor.scheduler.worker import outcome


@dataclass(frozen=True)
class Verified:
    ok: bool
    lost: list[str]


def test_a_result_that_says_not_ok_is_a_failed_job() -> None:
    result = to_jsonable(Verified(ok=False, lost=["000000010000000000000007"]))
    out = outcome("verify", result)
    assert out["ok"] is False
    assert out["error"] == "verify finished with problems (see the result)"
    assert out["result"]["lost"] == ["000000010000000000000007"]


def test_results_without_trouble_are_successes() -> None:
    for result in (to_jsonable(Verified(ok=True, lost=[])), {"backup": {"id": "b1"}}, None, []):
        out = outcome("backup", result)
        assert out == {"ok": True, "result": result, "error": None}
