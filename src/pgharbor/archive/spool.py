"""The async archiving spool of one cluster, inside its data directory.

    <pgdata>/pg_wal/pgharbor-spool/   (archive_command runs in the data directory, so the
                                       shell can check a marker with a relative path;
                                       base backups skip pg_wal's contents)
        pusher.lock     held (flock) by the resident pusher while it runs: one per cluster
        pusher.running  exists while a pusher runs (a hint for the shell, which cannot
                        test a flock: archive_command waits for the marker of its file
                        instead of starting Python; stale after a kill -9, it only
                        bounds that wait)
        pusher.log      what the pusher did
        done/<file>     the file is durable in the required copies; archive_command
                        consumes (removes) the marker and reports success
        failed/<file>   the last attempt failed: the reason, for archive_command to print

A marker is only a hint that saves work: losing one (a crash) only means the file is
pushed again, which is idempotent. WAL itself never enters the spool: PostgreSQL keeps
every file until archive_command reports it archived, so nothing is ever dropped.
"""

from __future__ import annotations

import contextlib
import os

from pgharbor.archive.daemon import hold_lock, lock_held, spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgharbor.settings import Settings

SPOOL = "pg_wal/pgharbor-spool"
RUNNING = "pusher.running"
#: How long archive_command's shell waits for the running pusher's marker of its file
#: (polls of 20 ms: each is a ``sleep`` process, CPU the pusher could use) before it
#: starts pgharbor, which reports a failure or starts a pusher.
SHELL_WAIT_POLLS = 150


def _unlink(path: str) -> None:
    """Remove a file that may already be gone."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Spool:
    def __init__(self, pgdata: str) -> None:
        self.root = os.path.join(pgdata, SPOOL)
        self.done_dir = os.path.join(self.root, "done")
        self.failed_dir = os.path.join(self.root, "failed")
        self.lock_path = os.path.join(self.root, "pusher.lock")
        self.running_path = os.path.join(self.root, RUNNING)
        self.log_path = os.path.join(self.root, "pusher.log")

    def ensure(self) -> None:
        for d in (self.done_dir, self.failed_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def _write(self, path: str, text: str) -> None:
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def mark_done(self, name: str, note: str = "") -> None:
        self._write(os.path.join(self.done_dir, name), note)
        _unlink(os.path.join(self.failed_dir, name))

    def mark_failed(self, name: str, reason: str) -> None:
        self._write(os.path.join(self.failed_dir, name), reason)

    def is_done(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.done_dir, name))

    def take_done(self, name: str) -> bool:
        """Consume the done marker of ``name``: True if the file was archived."""
        try:
            os.unlink(os.path.join(self.done_dir, name))
        except FileNotFoundError:
            return False
        return True

    def failure(self, name: str) -> tuple[float, str] | None:
        path = os.path.join(self.failed_dir, name)
        try:
            mtime = os.stat(path).st_mtime
            with open(path) as f:
                return mtime, f.read()
        except FileNotFoundError:
            return None

    def pusher_running(self) -> bool:
        return lock_held(self.lock_path)

    def hold_lock(self) -> int | None:
        """Take the pusher lock for this process's lifetime (and leave the running marker);
        None if another pusher has it."""
        self.ensure()
        fd = hold_lock(self.lock_path)
        if fd is not None:
            self._write(self.running_path, str(os.getpid()))
        return fd

    def release(self, fd: int) -> None:
        """The pusher exits: the marker goes first, then the lock."""
        _unlink(self.running_path)
        os.close(fd)

    def sweep(self, keep: set[str]) -> None:
        """Forget markers of files PostgreSQL no longer offers (archived, or recycled)."""
        for d in (self.done_dir, self.failed_dir):
            for name in os.listdir(d):
                if name not in keep and not name.startswith("."):
                    _unlink(os.path.join(d, name))


def spawn_pusher(settings: Settings, cluster: str, pgdata: str) -> None:
    """Start a detached pusher (it exits at once if another one holds the lock)."""
    spool = Spool(pgdata)
    spool.ensure()
    spawn(settings, "pusher", cluster, pgdata, spool.log_path)


def async_archive_command(command: str, cluster: str) -> str:
    """The async archive_command: the shell confirms a file the pusher already archived
    (no Python start-up at all). While a pusher runs (its marker) and the file has
    neither a done nor a failed marker, the shell waits for one (20 ms polls, ~3 s at
    most), so an archiver that caught up with the pusher costs a ``sleep``, not a Python
    start beside the pusher's compression. Otherwise pgharbor reports the failure, or
    starts the pusher and waits. ``command``: the pgharbor executable with its global
    options."""
    import shlex

    done, failed, running = f"{SPOOL}/done/%f", f"{SPOOL}/failed/%f", f"{SPOOL}/{RUNNING}"
    wait = (
        f"i=0; while [ ! -e {done} ] && [ ! -e {failed} ] && [ -e {running} ] && "
        f"[ $i -lt {SHELL_WAIT_POLLS} ]; do sleep 0.02; i=$((i+1)); done; "
    )
    push = f"{command} wal push --async {shlex.quote(cluster)} %p"
    return f"{wait}[ -e {done} ] && rm -f {done} || {push}"
