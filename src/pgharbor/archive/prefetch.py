"""Prefetching for wal fetch: replay never waits on the network.

When PostgreSQL asks for segment N, the resident prefetcher (one per data directory,
started on demand, exits when idle) fetches the following segments of the same timeline
in parallel into ``<pgdata>/pg_wal/pgharbor-prefetch/``: verified, written atomically,
at most ``depth`` files. A cached segment is handed over by a rename (same filesystem).
It stops at the first segment the archive does not have (the end of the archive, or of a
timeline) and only asks for it again after a pause, so nothing probes endlessly.

While it reads a segment, an empty ``.inflight.<name>`` marker sits beside the cache:
the restore_command's shell waits for that segment (10 ms polls, bounded) instead of
starting pgharbor to read it a second time. The first ``wal fetch`` that finds no
prefetcher starts one before it reads its own segment, so the window is being filled
while PostgreSQL replays the first file.
"""

from __future__ import annotations

import contextlib
import os
import time

from pgharbor.archive.daemon import hold_lock, lock_held, spawn
from pgharbor.domain.wal import WalKind, parse_name, segment_name
from pgharbor.plain import absolute_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from concurrent.futures import Future
    from typing import Any

    from pgharbor.archive.hotcli import LazySettings
    from pgharbor.settings import Settings

CACHE = "pg_wal/pgharbor-prefetch"
INFLIGHT = ".inflight."
#: How long restore_command's shell waits for a segment the prefetcher is reading (polls
#: of 10 ms) before it runs pgharbor itself.
SHELL_WAIT_POLLS = 500


class Cache:
    def __init__(self, pgdata: str) -> None:
        self.root = os.path.join(pgdata, CACHE)
        self.wanted = os.path.join(self.root, "wanted")
        self.lock = os.path.join(self.root, "prefetch.lock")
        self.log = os.path.join(self.root, "prefetch.log")

    def take(self, name: str, dest: str) -> bool:
        """Move a prefetched copy of ``name`` to ``dest``; False if there is none."""
        try:
            os.replace(os.path.join(self.root, name), dest)
        except FileNotFoundError:
            return False
        return True

    def want(self, name: str) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        tmp = os.path.join(self.root, f".wanted.{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(name)
        os.replace(tmp, self.wanted)

    def inflight(self, name: str, on: bool) -> None:
        """The marker the shell waits on while ``name`` is being read (best effort)."""
        path = os.path.join(self.root, INFLIGHT + name)
        if on:
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        else:
            _unlink(path)

    def clear(self, *keep: str) -> None:
        """Remove every prefetched file (what a previous prefetcher left, or a crash)."""
        for entry in os.listdir(self.root):
            if entry not in ("prefetch.lock", "prefetch.log", *keep):
                _unlink(os.path.join(self.root, entry))


def take_prefetched(pgdata: str, name: str, dest: str) -> bool:
    """A prefetched copy of ``name`` moved to ``dest``; False when there is none, or the
    prefetch folder cannot be used (a warning: the archive itself is asked then)."""
    import sys

    try:
        return Cache(pgdata).take(name, dest)
    except OSError as exc:
        print(
            f"pgharbor: warning: prefetch folder {CACHE}: {exc.strerror or exc}; "
            "fetching from the archive",
            file=sys.stderr,
        )
        return False


class Degraded(Exception):
    """A segment that could only be read after a bad copy: not prefetched."""


def note_fetched(lazy: LazySettings, cluster: str, pgdata: str, name: str) -> None:
    """PostgreSQL asks for (or got) segment ``name``: move the window, start the
    prefetcher (the settings are read only then, and it is started only when
    prefetch_depth allows). Called before a segment is read from the archive too, so a
    new prefetcher starts while that read runs."""
    wal = parse_name(name)
    if wal.kind is not WalKind.SEGMENT:
        return
    cache = Cache(pgdata)
    cache.want(name)
    if not lock_held(cache.lock):
        settings = lazy.get()
        if settings.prefetch_depth > 0:
            spawn(settings, "prefetcher", cluster, pgdata, cache.log)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def window(wanted: str, depth: int, segment_size: int) -> list[str]:
    w = parse_name(wanted)
    first = w.segno(segment_size) + 1
    return [segment_name(w.timeline, n, segment_size) for n in range(first, first + depth)]


class Prefetcher:
    """The resident prefetcher's loop: keep the ``depth`` segments after the one
    PostgreSQL wants in the cache, read by ``workers`` threads."""

    def __init__(self, settings: Settings, cluster: str, cache: Cache) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from pgharbor.archive.context import HotSession

        self.settings, self.cluster, self.cache = settings, cluster, cache
        session = HotSession(settings, cluster)
        session.close()
        self.ctx = session.ctx
        self.depth, self.workers = settings.prefetch_depth, settings.prefetch_workers
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="prefetch")
        self.inflight: dict[str, Future[bytes | None]] = {}
        self.missing_until: dict[str, float] = {}
        self.degraded: set[str] = set()
        self.written: set[str] = set()
        self.last_wanted, self.changed = "", time.monotonic()

    def get(self, name: str) -> bytes | None:
        from pgharbor.archive.fetch import read_archived

        found = read_archived(self.settings, self.ctx, parse_name(name))
        if found is None:
            return None
        data, target, problems = found
        if problems:  # degraded: leave it to wal fetch, which says so in PostgreSQL's log
            raise Degraded(f"read from {target} after: " + "; ".join(problems))
        return data

    def wanted(self) -> str:
        """The segment PostgreSQL wants next: what wal fetch wrote, or, when restore_command's
        shell fast path took files we wrote (it renames them into place without running
        pgharbor), the newest file taken."""
        try:
            with open(self.cache.wanted) as f:
                wanted = f.read().strip()
        except FileNotFoundError:
            wanted = ""
        taken = [n for n in self.written if not os.path.exists(os.path.join(self.cache.root, n))]
        if taken:
            self.written.difference_update(taken)
            newest = max(taken)
            if newest > wanted:
                wanted = newest
                self.cache.want(wanted)
        return wanted

    def trim(self, keep: set[str]) -> None:
        """Keep the cache to the window."""
        for entry in os.listdir(self.cache.root):
            if entry.startswith(INFLIGHT):
                if entry[len(INFLIGHT) :] not in self.inflight:
                    _unlink(os.path.join(self.cache.root, entry))  # a crash's leftover
            elif entry not in keep and not entry.startswith((".", "wanted", "prefetch")):
                _unlink(os.path.join(self.cache.root, entry))
                self.written.discard(entry)

    def collect(self, keep: set[str], now: float, log: logging.Logger) -> None:
        """Write what finished reading (still in the window); note what is missing."""
        for name, fut in list(self.inflight.items()):
            if not fut.done():
                continue
            del self.inflight[name]
            try:
                self.store(name, fut, keep, now, log)
            finally:
                self.cache.inflight(name, False)  # after the file is in place: the shell

    def store(
        self, name: str, fut: Future[bytes | None], keep: set[str], now: float, log: Any
    ) -> None:
        try:
            data = fut.result()
        except Degraded as exc:
            log.warning("%s: %s; not prefetched (wal fetch reports it)", name, exc)
            self.degraded.add(name)
            return
        except Exception as exc:  # unreachable target or corrupt copy: retry later
            log.warning("%s: %s", name, exc)
            self.missing_until[name] = now + 2.0
            return
        if data is None:
            self.missing_until[name] = now + 1.0  # the end of the archive, for now
        elif name in keep:
            from pgharbor.archive.fetch import write_atomic

            write_atomic(os.path.join(self.cache.root, name), data, durable=True)
            self.written.add(name)

    def submit(self, names: list[str], now: float) -> None:
        for name in names:
            if (
                name in self.inflight
                or name in self.degraded
                or os.path.exists(os.path.join(self.cache.root, name))
            ):
                continue
            if self.missing_until.get(name, 0) > now:
                break  # nothing past a missing segment: it ends the timeline for now
            # the whole window is queued (``workers`` read at a time), each with its
            # marker at once: a restore_command that outruns the reads waits for its
            # segment instead of reading it again beside them
            self.cache.inflight(name, True)
            self.inflight[name] = self.pool.submit(self.get, name)

    def run(self, log: logging.Logger) -> None:
        """Until nothing new was wanted for ``prefetch_idle_exit`` seconds."""
        while True:
            wanted = self.wanted()
            now = time.monotonic()
            if wanted != self.last_wanted:
                self.last_wanted, self.changed = wanted, now
            elif now - self.changed > self.settings.prefetch_idle_exit:
                return
            names = window(wanted, self.depth, self.ctx.wal_segment_size) if wanted else []
            keep = set(names)
            self.trim(keep)
            self.collect(keep, now, log)
            self.submit(names, now)
            # woken by the first read that finishes; and every 10 ms to see files the
            # shell took (the window moves on before the restore_command gets there)
            if self.inflight:
                from concurrent.futures import FIRST_COMPLETED, wait

                wait(list(self.inflight.values()), 0.01, FIRST_COMPLETED)
            else:
                time.sleep(0.01)


def run_prefetcher(settings: Settings, cluster: str, pgdata_arg: str) -> int:
    # the resident process only: wal fetch itself never imports logging or threads
    import logging

    log = logging.getLogger("pgharbor.prefetch")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cache = Cache(absolute_path(pgdata_arg))
    os.makedirs(cache.root, mode=0o700, exist_ok=True)
    fd = hold_lock(cache.lock)
    if fd is None:
        return 0
    cache.clear("wanted")  # no file from before this prefetcher is trusted (a crash)
    prefetcher = Prefetcher(settings, cluster, cache)
    log.info(
        "prefetcher for %s in %s: depth %d, %d workers",
        cluster,
        cache.root,
        prefetcher.depth,
        prefetcher.workers,
    )
    try:
        prefetcher.run(log)
    finally:
        prefetcher.pool.shutdown(wait=False, cancel_futures=True)
        cache.clear()  # clean after use
        os.close(fd)
        log.info("prefetcher for %s exits", cluster)
    return 0


def fast_restore_command(command: str, cluster: str) -> str:
    """The restore_command: the shell hands over a prefetched segment with a rename (no
    Python start-up at all); anything else goes to ``wal fetch --strict``, which exits 99
    for "not in the archive". The shell passes that on as PostgreSQL's "not found" (1),
    and turns every other failure (pgharbor's own 126, but also an interpreter or an
    installation that fails before pgharbor's code runs) into 126 in archive recovery, so
    PostgreSQL stops instead of ending recovery early; a standby (standby.signal) gets 1
    and retries. ``command`` is the pgharbor executable with its global options."""
    import shlex

    cached, inflight = f"{CACHE}/%f", f"{CACHE}/{INFLIGHT}%f"
    fetch = f"{command} wal fetch --strict {shlex.quote(cluster)} %f %p"
    wait = (
        f"i=0; while [ ! -f {cached} ] && [ -e {inflight} ] && [ $i -lt {SHELL_WAIT_POLLS} ]; "
        "do sleep 0.01; i=$((i+1)); done; "
    )
    return (
        f"{wait}[ -f {cached} ] && mv -f {cached} %p || {{ {fetch}; r=$?; [ $r -eq 0 ] || "
        "{ [ $r -eq 99 ] || [ -f standby.signal ] || exit 126; exit 1; }; }"
    )
