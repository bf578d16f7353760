"""Named points where the fault-injection suite (tests/faults) stops a real process.

``point(name)`` does nothing unless the environment variable ``PGHARBOR_FAULT`` names
it: ``PGHARBOR_FAULT="backup.before_manifest=kill"`` makes the process SIGKILL itself
there (a real ``kill -9``: no cleanup, no ``finally``), ``…=pause`` makes it wait there
until the test lets it go (for interleaving two commands at an exact step), and
``…=fail`` raises OSError(EIO) as a failing disk would. Several points are separated
by commas. A paused process writes ``$PGHARBOR_FAULT_DIR/<name>.paused`` (holding its
pid) and waits until that file is removed (at most ``PGHARBOR_FAULT_WAIT`` seconds,
default 300). Only cold paths (backup, delete, restore) have points: the per-segment
``wal push``/``wal fetch`` path has none.
"""

from __future__ import annotations

import errno
import os
import signal
import time

ENV = "PGHARBOR_FAULT"


def _action(name: str) -> str | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    for item in spec.split(","):
        point, _, action = item.strip().partition("=")
        if point == name:
            return action or "kill"
    return None


def point(name: str) -> None:
    """A place where a test may kill, pause or fail this process (see the module)."""
    action = _action(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "fail":
        raise OSError(errno.EIO, f"injected I/O error at {name}")
    elif action == "pause":
        folder = os.environ.get("PGHARBOR_FAULT_DIR") or "."
        marker = os.path.join(folder, f"{name}.paused")
        with open(marker, "w") as f:
            f.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + float(os.environ.get("PGHARBOR_FAULT_WAIT", "300"))
        while os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        raise ValueError(f"{ENV}: unknown action {action!r} for {name}")
