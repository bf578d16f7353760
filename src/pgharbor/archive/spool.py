"""The async archiving spool of one cluster, inside its data directory.

    <pgdata>/pg_wal/pgharbor-spool/   (archive_command runs in the data directory, so the
                                       shell can check a marker with a relative path;
                                       base backups skip pg_wal's contents)
        pusher.lock     held (flock) by the resident pusher while it runs: one per cluster
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
from pathlib import Path

from pgharbor.archive.daemon import hold_lock, lock_held

SPOOL = "pg_wal/pgharbor-spool"


class Spool:
    def __init__(self, pgdata: Path) -> None:
        self.root = pgdata / SPOOL
        self.done_dir = self.root / "done"
        self.failed_dir = self.root / "failed"
        self.lock_path = self.root / "pusher.lock"
        self.log_path = self.root / "pusher.log"

    def ensure(self) -> None:
        for d in (self.done_dir, self.failed_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)

    def mark_done(self, name: str, note: str = "") -> None:
        self._write(self.done_dir / name, note)
        with contextlib.suppress(FileNotFoundError):
            (self.failed_dir / name).unlink()

    def mark_failed(self, name: str, reason: str) -> None:
        self._write(self.failed_dir / name, reason)

    def is_done(self, name: str) -> bool:
        return (self.done_dir / name).exists()

    def take_done(self, name: str) -> bool:
        """Consume the done marker of ``name``: True if the file was archived."""
        try:
            (self.done_dir / name).unlink()
        except FileNotFoundError:
            return False
        return True

    def failure(self, name: str) -> tuple[float, str] | None:
        path = self.failed_dir / name
        try:
            return path.stat().st_mtime, path.read_text()
        except FileNotFoundError:
            return None

    def pusher_running(self) -> bool:
        return lock_held(self.lock_path)

    def hold_lock(self) -> int | None:
        """Take the pusher lock for this process's lifetime; None if another pusher has it."""
        self.ensure()
        return hold_lock(self.lock_path)

    def sweep(self, keep: set[str]) -> None:
        """Forget markers of files PostgreSQL no longer offers (archived, or recycled)."""
        for d in (self.done_dir, self.failed_dir):
            for p in d.iterdir():
                if p.name not in keep and not p.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()


def async_archive_command(command: str, cluster: str) -> str:
    """The async archive_command: the shell confirms a file the pusher already archived
    (no Python start-up at all); otherwise pgharbor starts the pusher if needed and waits.
    ``command`` is the pgharbor executable with its global options."""
    import shlex

    done = f"{SPOOL}/done/%f"
    return f"[ -e {done} ] && rm -f {done} || {command} wal push --async {shlex.quote(cluster)} %p"
