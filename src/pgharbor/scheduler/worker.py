"""One job in its own process (``python -m pgharbor.scheduler.worker``), so a job that
crashes, hangs or is killed takes no other job with it. The node writes the job on
stdin as JSON (with the catalog URL: never on a command line) and reads the outcome
from the file it names: ``{"ok": bool, "result": ..., "error": str|null}``. The worker
never writes the job row: the node commits the outcome under the job's fencing token.
The worker dies with its node (PR_SET_PDEATHSIG): a node killed with SIGKILL leaves no
job running behind the lease that another node is about to take over.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any

from pgharbor.errors import PgharborError
from pgharbor.render.output import to_jsonable
from pgharbor.scheduler import logs
from pgharbor.services.context import Services
from pgharbor.settings import load_settings

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the lease still fences the result
        pass
    if os.getppid() != parent:  # the node died before prctl took effect
        os._exit(1)


def verify(svc: Services, cluster: str) -> Any:
    """WAL verification and repair (services.verification)."""
    from pgharbor.services import verification

    return verification.verify(svc, cluster)


def run(svc: Services, kind: str, cluster: str, scheduled: bool) -> Any:
    """The job's result (a dataclass or dict), or a PgharborError."""
    if kind == "backup":
        from pgharbor.services import backups, retention

        done = backups.create(svc, cluster)
        out: dict[str, Any] = {"backup": to_jsonable(done)}
        if scheduled:  # a successful scheduled backup is followed by expire
            try:
                out["expire"] = to_jsonable(retention.expire(svc, cluster))
            except PgharborError as exc:
                out["expire"] = {"ok": False, "error": exc.message}
        return out
    if kind == "expire":
        from pgharbor.services import retention

        return retention.expire(svc, cluster)
    if kind == "verify":
        return verify(svc, cluster)
    if kind == "drill":  # the newest usable backup to the end of the archive
        from pgharbor.services import drills

        return drills.run(svc, cluster)
    raise PgharborError(f"unknown job kind {kind!r}")


def outcome(kind: str, result: Any) -> dict[str, Any]:
    """The job's record: a run that finished but found trouble (a lost WAL gap, a copy
    it could not repair, an expire its guard refused: ``ok`` false in its result) is a
    failed job, with its whole result."""
    good = not (isinstance(result, dict) and result.get("ok") is False)
    why = None if good else f"{kind} finished with problems (see the result)"
    return {"ok": good, "result": result, "error": why}


def main() -> int:
    job = json.loads(sys.stdin.read())
    die_with_parent(int(job["parent"]))
    out: dict[str, Any]
    try:
        settings = load_settings(catalog=job["catalog"], config=job.get("config"))
        logs.setup(settings, f"{job['node']} job {job['id']}")
        result = to_jsonable(
            run(Services(settings), job["kind"], job["cluster"], bool(job["scheduled"]))
        )
        out = outcome(job["kind"], result)
    except PgharborError as exc:
        out = {"ok": False, "result": None, "error": exc.message}
    except Exception as exc:  # one line, as the CLI would print it
        from pgharbor.errors import error_line

        out = {"ok": False, "result": None, "error": error_line(exc).removeprefix("pgharbor: ")}
    tmp = job["out"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, job["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
