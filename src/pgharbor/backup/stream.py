"""Cutting a base backup's tar stream into chunks and storing them on every target."""

from __future__ import annotations

import hashlib
import tarfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from pgharbor import faultpoint
from pgharbor.backup.chunkmap import ChunkMapWriter
from pgharbor.backup.chunks import ChunkCodec, ChunkStore
from pgharbor.backup.manifest import FileEntry

CHUNK_SIZE = 64 * 1024
MID_STREAM = 64  # chunks stored before the "backup.mid_stream" fault point

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class TargetStore:
    id: str
    name: str
    store: ChunkStore


class Streamer:
    """Cuts tar members into chunks, encodes them on worker threads, stores them in order."""

    def __init__(
        self, stores: list[TargetStore], codec: ChunkCodec, workers: int, ids: ChunkMapWriter
    ) -> None:
        self.stores, self.codec, self.ids = stores, codec, ids
        self.queued = 0  # chunk ids handed to the window so far: the next one's position
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chunk")
        self.window: deque[Future[tuple[bytes, int, bytes | None]]] = deque()
        self.limit = workers * 4
        self.logical = 0

    def _prepare(self, block: bytes) -> tuple[bytes, int, bytes | None]:
        cid = self.codec.chunk_id(block)
        needed = any(not t.store.has(cid) for t in self.stores)
        return cid, len(block), self.codec.encode(block) if needed else None

    def _settle(self) -> None:
        cid, size, blob = self.window.popleft().result()
        for t in self.stores:
            # stores only gain chunks: one missing now was missing when it was hashed
            t.store.add(cid, size, blob)
        if self.ids.append(cid) == MID_STREAM:
            faultpoint.point("backup.mid_stream")

    def archive(
        self, stream: IO[bytes], progress: Progress, done: list[int], total: int
    ) -> list[FileEntry]:
        entries: list[FileEntry] = []
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in tf:
                entry = FileEntry(
                    path=member.name.rstrip("/"),
                    type="f",
                    mode=member.mode,
                    mtime=int(member.mtime),
                )
                if member.isdir():
                    entry.type = "d"
                elif member.issym():
                    entry.type, entry.link = "l", member.linkname
                elif member.isfile():
                    self._file(tf, member, entry, progress, done, total)
                else:
                    continue  # tar from BASE_BACKUP has no other member types
                entries.append(entry)
        while self.window:
            self._settle()
        return entries

    def _file(
        self,
        tf: tarfile.TarFile,
        member: tarfile.TarInfo,
        entry: FileEntry,
        progress: Progress,
        done: list[int],
        total: int,
    ) -> None:
        entry.size, entry.first_chunk = member.size, self.queued
        src = tf.extractfile(member)
        assert src is not None
        digest = hashlib.sha256()
        while block := src.read(CHUNK_SIZE):
            digest.update(block)
            self.window.append(self.pool.submit(self._prepare, block))
            self.queued += 1
            while len(self.window) > self.limit:
                self._settle()
            done[0] += len(block)
            progress(done[0], total)
        entry.sha256 = digest.hexdigest()
        self.logical += entry.size

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
