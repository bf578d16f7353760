"""Writing a backup's files into place. Chunks are fetched, decoded and verified on
worker threads (network, zstd and hashing release the GIL) within a bounded window, and
written straight to their offset in the final file: no temporary copy, memory bounded
by the window, not by the database."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pgharbor.backup.chunks import ChunkCodec
from pgharbor.backup.manifest import FileEntry
from pgharbor.restore.source import BackupSource

Progress = Callable[[int, int], None]


@dataclass
class _Open:
    """A file being written: closed (and its mode set) once its last chunk is written."""

    fd: int
    dest: Path
    mode: int
    pending: int = 0
    queued_all: bool = False

    def maybe_close(self) -> None:
        if self.queued_all and self.pending == 0 and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            os.chmod(self.dest, self.mode)


class Writer:
    def __init__(
        self,
        source: BackupSource,
        codec: ChunkCodec,
        chunk_size: int,
        delta: bool,
        progress: Progress,
        total: int,
        workers: int | None = None,
    ) -> None:
        self.source, self.codec, self.chunk_size, self.delta = source, codec, chunk_size, delta
        self.progress, self.total = progress, total
        self.done = self.written = self.unchanged = 0
        n = workers or max(2, (os.cpu_count() or 2) * 2)
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="restore")
        self.window: deque[tuple[_Open, int, Future[bytes]]] = deque()
        self.limit = n * 4

    def tree(self, root: Path, files: list[FileEntry]) -> set[Path]:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        made: set[Path] = {root}
        for f in files:
            dest = root / f.path
            made.add(dest)
            if f.type == "d":
                dest.mkdir(exist_ok=True)
                dest.chmod(f.mode & 0o7777)
            elif f.type == "l":
                if dest.is_symlink() or dest.exists():
                    dest.unlink()
                dest.symlink_to(f.link or "")
            else:
                self.file(dest, f)
        return made

    def file(self, dest: Path, f: FileEntry) -> None:
        existing = self.delta and dest.is_file() and not dest.is_symlink()
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | (0 if existing else os.O_TRUNC), 0o600)
        handle = _Open(fd, dest, f.mode & 0o777)
        changed = not existing
        if existing and os.fstat(fd).st_size != f.size:
            os.ftruncate(fd, f.size)
            changed = True
        for i, cid_hex in enumerate(f.chunks):
            cid = bytes.fromhex(cid_hex)
            offset = i * self.chunk_size
            if existing:
                local = os.pread(fd, self.chunk_size, offset)
                if local and self.codec.chunk_id(local) == cid:
                    self._advance(len(local))
                    continue
            changed = True
            handle.pending += 1
            self.window.append((handle, offset, self.pool.submit(self.source.chunk, cid, f.path)))
            while len(self.window) > self.limit:
                self._settle()
        if not existing:
            os.ftruncate(fd, f.size)  # sparse-safe: the size is right even for empty tails
        handle.queued_all = True
        handle.maybe_close()
        if not changed:
            self.unchanged += 1

    def _advance(self, n: int) -> None:
        self.done += n
        self.progress(self.done, self.total)

    def _settle(self) -> None:
        handle, offset, fut = self.window.popleft()
        raw = fut.result()
        os.pwrite(handle.fd, raw, offset)
        self.written += len(raw)
        self._advance(len(raw))
        handle.pending -= 1
        handle.maybe_close()

    def finish(self) -> None:
        """Write everything still in flight; raises the first chunk error."""
        while self.window:
            self._settle()

    def abort(self) -> None:
        """Drop whatever is still in flight (after an error) and stop the workers."""
        for handle, _offset, fut in self.window:
            fut.cancel()
            if handle.fd >= 0:
                os.close(handle.fd)
                handle.fd = -1
        self.window.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
