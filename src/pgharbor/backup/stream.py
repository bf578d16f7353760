"""Cutting a base backup's tar stream into chunks and storing them on every target."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from pgharbor import faultpoint
from pgharbor.backup.chunkmap import ChunkMapWriter
from pgharbor.backup.chunks import ChunkCodec, ChunkStore, Probe
from pgharbor.backup.manifest import FileEntry
from pgharbor.backup.tarstream import CHUNK, ENTRY, FILE_END, Checksum, Member, Payload, Pump

CHUNK_SIZE = 64 * 1024
MID_STREAM = 64  # chunks stored before the "backup.mid_stream" fault point

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class TargetStore:
    id: str
    name: str
    store: ChunkStore


Prepared = tuple[bytes, int, list[Probe], bytes | None]  # id, size, per store, encoding


class Streamer:
    """Cuts tar members into chunks, encodes them on worker threads, stores them in order.
    ``checksums`` gets every file's checksum (``algorithm``), by its path in
    backup_manifest."""

    def __init__(
        self,
        stores: list[TargetStore],
        codec: ChunkCodec,
        workers: int,
        ids: ChunkMapWriter,
        algorithm: str = "CRC32C",
    ) -> None:
        self.stores, self.codec, self.ids = stores, codec, ids
        self.algorithm = algorithm
        self.checksums: dict[str, str] = {}
        self.queued = 0  # chunk ids handed to the window so far: the next one's position
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chunk")
        self.window: deque[Future[list[Prepared]]] = deque()  # a few chunks per job
        self.inflight = 0  # chunks in the window
        self.limit = workers * 16  # 1 MiB of chunks per worker in flight
        self.logical = 0

    def _prepare(self, blocks: list[bytes]) -> list[Prepared]:
        """On a worker: the chunks' ids, where each store has them, and the encoding of
        those some store lacks."""
        cids = [self.codec.chunk_id(b) for b in blocks]
        probes = [t.store.probe_many(cids) for t in self.stores]
        out: list[Prepared] = []
        for k, (cid, block) in enumerate(zip(cids, blocks, strict=True)):
            mine = [p[k] for p in probes]
            needed = any(loc is None for loc, _ in mine)
            out.append((cid, len(block), mine, self.codec.encode(block) if needed else None))
        return out

    def _settle(self) -> None:
        prepared = self.window.popleft().result()
        self.inflight -= len(prepared)
        for cid, size, probes, blob in prepared:
            for t, probe in zip(self.stores, probes, strict=True):
                t.store.add(cid, size, blob, probe)
            if self.ids.append(cid) == MID_STREAM:
                faultpoint.point("backup.mid_stream")

    def archive(
        self,
        payloads: Iterable[Payload],
        progress: Progress,
        done: list[int],
        total: int,
        prefix: str = "",
    ) -> list[FileEntry]:
        """The entries of one tar archive, read from its payloads on a thread of its own
        (backup.tarstream); ``prefix``: where its files are in backup_manifest
        (``pg_tblspc/OID/`` for a tablespace)."""
        entries: list[FileEntry] = []
        pump = Pump(payloads, CHUNK_SIZE, lambda: Checksum(self.algorithm))
        try:
            entry: FileEntry | None = None
            for kind, obj in pump.events():
                if kind == CHUNK:
                    assert isinstance(obj, list)
                    self.window.append(self.pool.submit(self._prepare, obj))
                    self.queued += len(obj)
                    self.inflight += len(obj)
                    while self.inflight > self.limit:
                        self._settle()
                    done[0] += sum(len(b) for b in obj)
                    progress(done[0], total)
                elif kind == ENTRY:
                    assert isinstance(obj, Member)
                    entry = FileEntry(obj.name, obj.type, obj.mode, obj.size, obj.mtime, obj.link)
                    entry.first_chunk = self.queued
                    entries.append(entry)
                else:  # the end of a file: its checksum
                    assert kind == FILE_END and entry is not None and isinstance(obj, str)
                    self.checksums[prefix + entry.path] = obj
                    self.logical += entry.size
        finally:
            pump.close()
        while self.window:
            self._settle()
        return entries

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
