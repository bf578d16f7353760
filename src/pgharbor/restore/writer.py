"""Writing a backup's files into place. The chunks of a batch of files are grouped into
runs (neighbours in a pack: one ranged read), read, decoded, verified and written straight
to their offsets in the final files on worker threads (I/O, zstd and hashing release the
GIL): no temporary copy, and memory bounded by the batch and the runs in flight, not by
the database. Chunk ids come from the backup's chunk map, one part at a time. Every file
is opened through a Root (restore/place.py): never through a symlink, never outside it."""

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
MAX_OPEN = 256  # files open at once (many small files: well under the usual 1024 fds)


@dataclass
class _Open:
    """A file being written: closed (and its mode set) once its last chunk is written."""

    fd: int
    path: str
    size: int
    mode: int
    pending: int = 0
    queued_all: bool = False

    def maybe_close(self) -> None:
        if self.queued_all and self.pending == 0 and self.fd >= 0:
            os.fchmod(self.fd, self.mode)
            os.close(self.fd)
            self.fd = -1


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
        if len(self.handles) >= MAX_OPEN:
            self._dispatch()
            while self.inflight and len(self.handles) >= MAX_OPEN // 2:
                self._settle()
        fd, existing = root.open_file(STAGED.get(f.path, f.path), reuse=self.delta)
        handle = _Open(fd, f.path, f.size, file_mode(f.mode))
        self.handles.append(handle)
        changed = not existing
        if existing and os.fstat(fd).st_size != f.size:
            os.ftruncate(fd, f.size)
            changed = True
        elif not existing:
            os.ftruncate(fd, f.size)  # sparse-safe: the size is right even for empty tails
        for i, cid in enumerate(self.ids.ids(f.first_chunk, chunks_of(f.size, self.chunk_size))):
            offset = i * self.chunk_size
            if existing:
                local = os.pread(fd, self.chunk_size, offset)
                if local and self.codec.chunk_id(local) == cid:
                    self._advance(len(local))
                    continue
            changed = True
            with self.lock:
                handle.pending += 1
            self.batch.append(_Target(cid, f.path, handle, offset))
            if len(self.batch) >= BATCH_CHUNKS:
                self._dispatch()
        with self.lock:
            handle.queued_all = True
            handle.maybe_close()
            if handle.fd < 0:
                self.handles.remove(handle)
        if not changed:
            self.unchanged += 1

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
        os.pwrite(t.handle.fd, raw, t.offset)
        with self.lock:
            t.handle.pending -= 1
            t.handle.maybe_close()

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
        if self.batch:
            self._dispatch()
        while self.inflight:
            self._settle()

    def abort(self) -> None:
        """Drop whatever is still in flight (after an error) and stop the workers."""
        for fut in self.inflight:
            fut.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.inflight.clear()
        self.batch = []
        with self.lock:
            for handle in self.handles:
                if handle.fd >= 0:
                    os.close(handle.fd)
                    handle.fd = -1
        self.handles = []
