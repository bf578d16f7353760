"""The resident pusher: async archiving that works ahead of PostgreSQL.

Started on demand by the first ``wal push --async`` (one per cluster: a lock in the
spool), it watches ``pg_wal/archive_status/*.ready`` and pushes every ready file to the
targets on worker threads, then leaves a done marker that archive_command consumes.
Rows for the catalog go to the local journal first (durable, before the marker) and
reach the catalog in batches. It exits when idle. Killed at any moment, it loses
nothing: stores are atomic, markers come after durability, PostgreSQL still holds
every file not yet confirmed, and the next archive_command starts a new pusher.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pgharbor.archive.context import HotSession
from pgharbor.archive.early import push_threads
from pgharbor.archive.push import describe_degraded, store_file
from pgharbor.archive.spool import Spool, spawn_pusher
from pgharbor.errors import PgharborError
from pgharbor.settings import Settings

__all__ = ["Pusher", "ready_files", "run_pusher", "spawn_pusher"]

log = logging.getLogger("pgharbor.pusher")
FLUSH_EVERY = 1.0
REFRESH_EVERY = 30.0


def ready_files(status_dir: str) -> list[str]:
    """Files PostgreSQL waits to see archived: timeline history first, then in WAL order."""
    try:
        names = [n[:-6] for n in os.listdir(status_dir) if n.endswith(".ready")]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda n: (not n.endswith(".history"), n))


class Pusher:
    def __init__(
        self, settings: Settings, cluster: str, pgdata: str, workers: int, idle_exit: float
    ) -> None:
        self.settings, self.cluster, self.pgdata = settings, cluster, pgdata
        self.spool = Spool(pgdata)
        self.status_dir = os.path.join(pgdata, "pg_wal", "archive_status")
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="push")
        self.workers, self.idle_exit = workers, idle_exit
        self.inflight: dict[
            str, Future[tuple[Any, list[dict[str, Any]], PgharborError | None]]
        ] = {}
        self.retry_at: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.session = HotSession(settings, cluster)
        self.session.close()
        self.refreshed = self.flushed = time.monotonic()
        self.unflushed = 0

    def _task(
        self, name: str, threads: int = 0
    ) -> tuple[Any, list[dict[str, Any]], PgharborError | None]:
        return store_file(
            self.settings,
            self.session.ctx,
            os.path.join(self.pgdata, "pg_wal", name),
            recorded=self.session.recorded_checksums,
            threads=threads,
        )

    def _sweep(self, ready: list[str]) -> None:
        """A pusher killed mid-put (kill -9, OOM) left temporaries next to the files it
        was storing, which are still ready (never confirmed): remove those of writers that
        are gone. Runs once per pusher, on a worker, so a target that is down delays no
        push."""
        from pgharbor.domain.wal import parse_name
        from pgharbor.storage.factory import open_storage
        from pgharbor.storage.layout import wal_key

        folders = set()
        for name in ready:
            try:
                folders.add(wal_key(self.session.ctx.name, parse_name(name)).rpartition("/")[0])
            except PgharborError:
                continue  # not a WAL name: the push itself reports it
        for p in self.session.ctx.placements:
            try:
                storage = open_storage(p.url, self.settings.target_options(p.target))
                removed = sum(storage.sweep(f"{folder}/") for folder in sorted(folders))
            except Exception as exc:  # housekeeping: never fatal, never silent
                log.warning("sweeping %s for abandoned temporaries failed: %s", p.target, exc)
                continue
            if removed:
                log.info("%s: removed %d abandoned temporary objects", p.target, removed)

    def _collect(self) -> None:
        """Everything that finished: the rows of all of them journaled in one durable
        append (before any marker), then a marker each."""
        finished = []
        for name, fut in list(self.inflight.items()):
            if not fut.done():
                continue
            del self.inflight[name]
            result = None
            try:
                result, rows, error = fut.result()
            except PgharborError as exc:
                rows, error = [], exc
            except Exception as exc:  # a bug must not kill the pusher: report, retry later
                log.exception("pushing %s failed unexpectedly", name)
                rows, error = [], PgharborError(f"internal error: {type(exc).__name__}: {exc}")
            finished.append((name, result, rows, error))
        batch = [row for _name, _result, rows, _error in finished for row in rows]
        if batch:
            try:
                self.session.state.append_journal(batch)  # durable before the markers
                self.unflushed += len(batch)
            except Exception as exc:  # the files are stored: their index rows wait for sync
                log.warning(
                    "%d copy row(s) of %s not journaled (%s); `pgharbor wal sync %s` records them",
                    len(batch),
                    ", ".join(name for name, _r, rows, _e in finished if rows),
                    exc,
                    self.cluster,
                )
        for name, result, _rows, error in finished:
            if error is None:
                self.spool.mark_done(name)
                self.failures.pop(name, None)
                self.retry_at.pop(name, None)
                degraded = describe_degraded(result) if result is not None else None
                if degraded:
                    log.warning("%s", degraded)
                else:
                    log.info("%s archived", name)
            else:
                n = self.failures[name] = self.failures.get(name, 0) + 1
                self.retry_at[name] = time.monotonic() + min(30.0, 0.5 * 2 ** min(n, 6))
                self.spool.mark_failed(name, error.line())
                log.warning("%s: %s (attempt %d)", name, error.line(), n)

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.flushed < FLUSH_EVERY:
            return
        self.flushed = now
        if not self.unflushed and now - self.refreshed < REFRESH_EVERY:
            return
        try:
            session = HotSession(self.settings, self.cluster)  # refreshes placements too
        except Exception as exc:
            log.warning("catalog and cache unavailable: %s", exc)
            return
        try:
            if session.conn is not None:
                session.state.flush_journal(session.conn, session.kind, [])
                self.unflushed = 0
            self.session, self.refreshed = session, now
        except Exception as exc:
            log.warning("batch to the catalog failed (rows stay in the journal): %s", exc)
        finally:
            session.close()

    def run(self) -> int:
        lock = self.spool.hold_lock()  # and the running marker the shell waits on
        if lock is None:
            return 0  # another pusher serves this cluster
        log.info(
            "pusher started for %s in %s (%d workers)", self.cluster, self.pgdata, self.workers
        )
        idle_since = time.monotonic()
        try:
            self.pool.submit(self._sweep, ready_files(self.status_dir))
            while True:
                ready = ready_files(self.status_dir)
                self.spool.sweep(set(ready))
                now = time.monotonic()
                # a lone file (the pusher keeps up) is compressed on every core, for the
                # archive_command waiting on it; a backlog, one file per worker
                lone = not self.inflight and len(ready) == 1
                for name in ready:
                    if len(self.inflight) >= self.workers * 2:
                        break
                    if (
                        name in self.inflight
                        or self.spool.is_done(name)
                        or self.retry_at.get(name, 0) > now
                    ):
                        continue
                    threads = push_threads() if lone else 0
                    self.inflight[name] = self.pool.submit(self._task, name, threads)
                if self.inflight:  # woken by the first push that finishes, not a tick
                    wait(list(self.inflight.values()), 0.05, FIRST_COMPLETED)
                self._collect()
                self._flush()
                if ready or self.inflight:
                    idle_since = now
                elif now - idle_since > self.idle_exit:
                    break
                if not self.inflight:
                    time.sleep(0.02 if ready else 0.05)
        finally:
            self.pool.shutdown(wait=True)
            self._collect()
            self._flush(force=True)
            self.spool.release(lock)
            log.info("pusher for %s exits", self.cluster)
        return 0


def run_pusher(settings: Settings, cluster: str, pgdata: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # one more than the cores: a push also waits on fsync, and the cores stay busy then
    workers = settings.async_workers or max(2, (os.cpu_count() or 1) + 1)
    return Pusher(
        settings, cluster, str(Path(pgdata).absolute()), workers, settings.async_idle_exit
    ).run()
