"""What the resident helpers (async pusher, prefetcher) share: one instance per lock
file, and starting a detached ``pgharbor wal <verb>`` with the caller's settings."""

from __future__ import annotations

import fcntl
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgharbor.settings import Settings


def lock_held(path: str) -> bool:
    """True while some process holds the flock on ``path``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def hold_lock(path: str) -> int | None:
    """Take the flock on ``path`` for this process's lifetime (the file then holds our
    pid); None if another process has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def spawn(settings: Settings, verb: str, cluster: str, pgdata: str, log: str) -> None:
    """Start ``pgharbor wal VERB CLUSTER PGDATA`` detached (its own session, output to
    ``log``); it exits at once if another instance holds its lock. The catalog URL goes
    to the helper in its environment (PGHARBOR_CATALOG), never on its command line:
    every user can read command lines (ps), only the same user /proc/PID/environ."""
    import subprocess  # only here: most runs find the helper already running

    from pgharbor.plain import absolute_path

    args = [sys.executable, "-m", "pgharbor.entry"]
    if settings.config_file is not None:
        args += ["--config", absolute_path(settings.config_file)]
    args += ["wal", verb, cluster, pgdata]
    env = dict(os.environ)
    if settings.catalog:
        env["PGHARBOR_CATALOG"] = settings.catalog
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            cwd=pgdata,
            env=env,
        )
    finally:
        os.close(out)
