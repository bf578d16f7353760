"""Writing a backup's files into place. The chunks of a batch of files are grouped into
runs (neighbours in a pack: one ranged read), read, decoded, verified and written straight
to their offsets in the final files on worker threads (I/O, zstd and hashing release the
GIL): no temporary copy, and memory bounded by the batch and the runs in flight, not by
the database. Chunk ids come from the backup's chunk map, one part at a time. Every file
is opened through a Root (restore/place.py): never through a symlink, never outside it.

With --delta the chunks already in place are compared on the workers too (read and
hashed in groups, the GIL released), and only the ones that differ are read from the
backup."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pgharbor import faultpoint
from pgharbor.backup.chunkmap import ChunkMapReader, chunks_of
from pgharbor.backup.chunks import ChunkCodec
from pgharbor.backup.manifest import FileEntry
from pgharbor.errors import IntegrityError
from pgharbor.restore.place import Root
from pgharbor.restore.source import BackupSource, Run, Wanted
from pgharbor.restore.validate import STAGED, dir_mode, file_mode

Progress = Callable[[int, int], None]
BATCH_CHUNKS = 512  # chunks grouped into runs at once (32 MiB of data)
CHECK_CHUNKS = 32  # --delta: chunks of a file compared with its ids by one job (2 MiB)
# A worker writes back what it wrote to a file every SYNC_EVERY bytes (fdatasync): the
# disk writes while the others compute, so the final sync has little left to do.
SYNC_EVERY = 16 * 1024 * 1024
MAX_OPEN = 256  # files open at once (many small files: well under the usual 1024 fds)


@dataclass
class _Open:
    """A file being written: closed (and its mode set) once its last chunk is written."""

    fd: int
    path: str
    size: int
    mode: int
    pending: int = 0  # chunks to write and delta comparisons not settled yet
    queued_all: bool = False
    changed: bool = False  # any chunk written (or the size changed)
    unsynced: int = 0  # bytes written since the last fdatasync

    def maybe_close(self) -> bool:
        """Close it if nothing is left to do; whether it was closed now."""
        if self.queued_all and self.pending == 0 and self.fd >= 0:
            os.fchmod(self.fd, self.mode)
            os.close(self.fd)
            self.fd = -1
            return True
        return False


@dataclass
class _Target(Wanted):
    handle: _Open
    offset: int


class Writer:
    def __init__(
        self,
        source: BackupSource,
        ids: ChunkMapReader,
        codec: ChunkCodec,
        chunk_size: int,
        delta: bool,
        progress: Progress,
        total: int,
        workers: int | None = None,
    ) -> None:
        self.source, self.ids, self.codec = source, ids, codec
        self.chunk_size, self.delta = chunk_size, delta
        self.progress, self.total = progress, total
        self.done = self.written = self.unchanged = 0
        n = workers or max(2, (os.cpu_count() or 2) * 2)
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="restore")
        self.inflight: deque[Future[int]] = deque()
        self.checks: deque[tuple[_Open, int, list[bytes], Future[list[int]]]] = deque()
        self.limit = n + 2
        self.batch: list[_Target] = []
        self.handles: list[_Open] = []
        self.lock = threading.Lock()
        self.settled = 0

    def tree(self, root: Root, files: list[FileEntry]) -> None:
        """Write the (checked) entries of one tree; symlinks are the caller's."""
        for f in files:
            if f.type == "d":
                root.make_dir(f.path, dir_mode(f.mode))
            elif f.type == "f":
                self.file(root, f)

    def file(self, root: Root, f: FileEntry) -> None:
        while len(self.handles) >= MAX_OPEN and (self.checks or self.batch or self.inflight):
            if self.checks:
                self._settle_check()
            elif self.batch:
                self._dispatch()
            else:
                self._settle()
        fd, existing = root.open_file(STAGED.get(f.path, f.path), reuse=self.delta)
        handle = _Open(fd, f.path, f.size, file_mode(f.mode))
        self.handles.append(handle)
        handle.changed = not existing
        if existing and os.fstat(fd).st_size != f.size:
            os.ftruncate(fd, f.size)
            handle.changed = True
        elif not existing:
            os.ftruncate(fd, f.size)  # sparse-safe: the size is right even for empty tails
        ids = self.ids.ids(f.first_chunk, chunks_of(f.size, self.chunk_size))
        if existing:
            for first in range(0, len(ids), CHECK_CHUNKS):
                group = ids[first : first + CHECK_CHUNKS]
                with self.lock:
                    handle.pending += 1
                job = self.pool.submit(self._compare, handle.fd, first, group)
                self.checks.append((handle, first, group, job))
                while len(self.checks) > self.limit:
                    self._settle_check()
        else:
            for i, cid in enumerate(ids):
                self._queue(handle, i, cid)
        self._queued_all(handle)

    def _queue(self, handle: _Open, i: int, cid: bytes) -> None:
        with self.lock:
            handle.pending += 1
        self.batch.append(_Target(cid, handle.path, handle, i * self.chunk_size))
        if len(self.batch) >= BATCH_CHUNKS:
            self._dispatch()

    def _queued_all(self, handle: _Open) -> None:
        with self.lock:
            handle.queued_all = True
            self._closed(handle)

    def _closed(self, handle: _Open) -> None:
        """Under the lock: close the handle if it is done (counting an unchanged file)."""
        if handle.maybe_close():
            if handle in self.handles:
                self.handles.remove(handle)
            if not handle.changed:
                self.unchanged += 1

    def _compare(self, fd: int, first: int, ids: list[bytes]) -> list[int]:
        """On a worker: which of the ids (chunks first, first + 1, ...) the file does not
        hold already (a shorter read is a chunk that differs)."""
        differ = []
        for k, cid in enumerate(ids):
            offset = (first + k) * self.chunk_size
            local = os.pread(fd, self.chunk_size, offset)
            if not local or self.codec.chunk_id(local) != cid:
                differ.append(k)
        return differ

    def _settle_check(self) -> None:
        handle, first, ids, job = self.checks.popleft()
        differ = job.result()
        same = sum(
            min(self.chunk_size, handle.size - (first + k) * self.chunk_size)
            for k in range(len(ids))
            if k not in differ
        )
        if same:
            self._advance(same)
        if differ:
            handle.changed = True
        for k in differ:
            self._queue(handle, first + k, ids[k])
        with self.lock:
            handle.pending -= 1
            self._closed(handle)

    def _advance(self, n: int) -> None:
        self.done += n
        self.progress(self.done, self.total)

    def _dispatch(self) -> None:
        """Turn the batch into runs and hand them to the workers (at most limit in flight)."""
        runs, alone = self.source.runs(list(self.batch))
        self.batch = []
        jobs: list[tuple[Callable[[Any], int], Run | Wanted]] = [(self._run, r) for r in runs]
        jobs += [(self._one, w) for w in alone]
        for fn, arg in jobs:
            while len(self.inflight) >= self.limit:
                self._settle()
            self.inflight.append(self.pool.submit(fn, arg))

    def _put(self, t: _Target, raw: bytes) -> None:
        if t.offset + len(raw) > t.handle.size:  # a chunk larger than its place
            raise IntegrityError(f"{t.path}: a chunk runs past the file's size")
        h = t.handle
        os.pwrite(h.fd, raw, t.offset)
        with self.lock:
            h.unsynced += len(raw)
            sync = h.unsynced >= SYNC_EVERY
            if sync:
                h.unsynced = 0
            else:
                h.pending -= 1
                self._closed(h)
        if sync:  # still pending: the file stays open meanwhile
            os.fdatasync(h.fd)
            with self.lock:
                h.pending -= 1
                self._closed(h)

    def _run(self, run: Run) -> int:
        written = 0
        for w, raw in self.source.read_run(run):
            assert isinstance(w, _Target)
            self._put(w, raw)
            written += len(raw)
        return written

    def _one(self, w: Wanted) -> int:
        assert isinstance(w, _Target)
        raw = self.source.chunk(w.cid, w.path)
        self._put(w, raw)
        return len(raw)

    def _settle(self) -> None:
        n = self.inflight.popleft().result()
        self.settled += 1
        if self.settled == 1:
            faultpoint.point("restore.writing")  # files are half written
        self.written += n
        self._advance(n)
        with self.lock:
            self.handles = [h for h in self.handles if h.fd >= 0]

    def finish(self) -> None:
        """Write everything still queued or in flight; raises the first chunk error."""
        while self.checks:
            self._settle_check()
        if self.batch:
            self._dispatch()
        while self.inflight:
            self._settle()

    def abort(self) -> None:
        """Drop whatever is still in flight (after an error) and stop the workers."""
        for fut in self.inflight:
            fut.cancel()
        for *_, job in self.checks:
            job.cancel()
        self.checks.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.inflight.clear()
        self.batch = []
        with self.lock:
            for handle in self.handles:
                if handle.fd >= 0:
                    os.close(handle.fd)
                    handle.fd = -1
        self.handles = []
