"""The tar archives of a base backup, parsed straight from the COPY messages they arrive
in, on a thread of their own.

PostgreSQL's ``BASE_BACKUP`` writes plain ustar (``src/port/tar.c``: regular files,
directories and symlinks, names of at most 99 bytes, sizes in octal or, past 8 GiB, in
base-256). Reading that through :mod:`tarfile` over a buffered reader copied every byte
four times more and kept the main thread busy; here a chunk is cut from the messages
with one join (the messages themselves are libpq's buffers, not copies), each header's
checksum is verified, and any other member type is refused: a stream that is not what
PostgreSQL writes never becomes a backup.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import google_crc32c

from pgharbor.errors import IntegrityError

BLOCK = 512
Payload = bytes | memoryview


@dataclass
class Member:
    name: str
    type: str  # "f" file, "d" directory, "l" symlink
    mode: int
    size: int
    mtime: int
    link: str | None = None


def _number(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:  # base-256 (GNU), for sizes of 8 GiB and more
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise IntegrityError(f"tar header: {what} {text[:20]!r} is not a number") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def parse_header(h: bytes) -> Member | None:
    """The member a 512-byte header describes; None for a zero block (the end)."""
    if h.count(0) == BLOCK:
        return None
    stored = _number(h[148:156], "checksum")
    if sum(h[:148]) + 8 * 32 + sum(h[156:]) != stored:
        raise IntegrityError("tar header: checksum mismatch (not a tar stream from PostgreSQL)")
    name = _text(h[0:100])
    if h[257:262] == b"ustar" and h[345] != 0:
        name = _text(h[345:500]) + "/" + name
    flag = h[156:157]
    kind = {b"0": "f", b"\0": "f", b"5": "d", b"2": "l"}.get(flag)
    if kind is None:
        raise IntegrityError(f"tar member {name[:100]!r}: unsupported type {flag!r}")
    return Member(
        name=name.rstrip("/"),
        type=kind,
        mode=_number(h[100:108], "mode"),
        size=_number(h[124:136], "size") if kind == "f" else 0,
        mtime=_number(h[136:148], "mtime"),
        link=_text(h[157:257]) if kind == "l" else None,
    )


class TarReader:
    """Members and their data, from an archive's payloads in order."""

    def __init__(self, payloads: Iterable[Payload]) -> None:
        self._src = iter(payloads)
        self._parts: deque[memoryview] = deque()
        self._have = 0

    def _fill(self, n: int) -> bool:
        while self._have < n:
            p = next(self._src, None)
            if p is None:
                return False
            mv = memoryview(p)
            if len(mv):
                self._parts.append(mv)
                self._have += len(mv)
        return True

    def take(self, n: int) -> bytes:
        """The next n bytes; IntegrityError if the archive ends first."""
        if not self._fill(n):
            raise IntegrityError(f"tar stream ends inside a member ({self._have} of {n} bytes)")
        out: list[memoryview] = []
        need = n
        while need:
            head = self._parts[0]
            if len(head) <= need:
                out.append(self._parts.popleft())
                need -= len(head)
            else:
                out.append(head[:need])
                self._parts[0] = head[need:]
                need = 0
        self._have -= n
        return out[0].tobytes() if len(out) == 1 else b"".join(out)

    def members(self, chunk: int) -> Iterator[tuple[Member, Iterator[bytes]]]:
        """Each member, with an iterator over its data in pieces of ``chunk`` bytes (to be
        read to its end before the next member)."""
        while True:
            if not self._fill(BLOCK):
                raise IntegrityError("tar stream ends without its end-of-archive blocks")
            m = parse_header(self.take(BLOCK))
            if m is None:
                self._drain()
                return
            yield m, self._data(m.size, chunk)

    def _data(self, size: int, chunk: int) -> Iterator[bytes]:
        left = size
        while left:
            n = min(chunk, left)
            yield self.take(n)
            left -= n
        if size % BLOCK:
            self.take(BLOCK - size % BLOCK)

    def _drain(self) -> None:
        """The rest after the end (more zero blocks, as tar pads to a record)."""
        self._parts.clear()
        self._have = 0
        for _ in self._src:
            pass


# Events from the reading thread, in order: an entry (a Member), chunks of the current
# file (a list of bytes), the end of the current file (its checksum), the end (None).
Event = tuple[str, object]
ENTRY, CHUNK, FILE_END, END, ERROR = "entry", "chunk", "end-of-file", "end", "error"


class Pump:
    """Reads one archive on a thread: receiving (libpq releases the GIL while it waits
    for the server) and parsing overlap the hashing, compressing and storing. Chunks
    come ``batch`` at a time; the events queue is bounded (16 events: 4 MiB)."""

    def __init__(
        self,
        payloads: Iterable[Payload],
        chunk: int,
        checksum: Callable[[], Checksum],
        batch: int = 4,
    ) -> None:
        self.q: queue.Queue[Event] = queue.Queue(maxsize=16)
        self.stop = threading.Event()
        self.chunk, self.checksum, self.batch = chunk, checksum, batch
        self.thread = threading.Thread(target=self._run, args=(payloads,), name="tar", daemon=True)
        self.thread.start()

    def _put(self, ev: Event) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(ev, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _run(self, payloads: Iterable[Payload]) -> None:
        try:
            for m, data in TarReader(payloads).members(self.chunk):
                self._put((ENTRY, m))
                if m.type == "f":
                    digest = self.checksum()
                    blocks: list[bytes] = []
                    for block in data:
                        digest.update(block)
                        blocks.append(block)
                        if len(blocks) == self.batch:
                            self._put((CHUNK, blocks))
                            blocks = []
                    if blocks:
                        self._put((CHUNK, blocks))
                    self._put((FILE_END, digest.hexdigest()))
            self._put((END, None))
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer, raised there
            try:
                self._put((ERROR, exc))
            except _Stopped:
                return

    def events(self) -> Iterator[Event]:
        while True:
            kind, obj = self.q.get()
            if kind == ERROR:
                assert isinstance(obj, BaseException)
                raise obj
            if kind == END:
                self.thread.join()
                return
            yield kind, obj

    def close(self) -> None:
        """Stop the thread (after the consumer failed): it drops what it would queue."""
        self.stop.set()
        self.thread.join(timeout=30)


class _Stopped(Exception):
    pass


class Checksum:
    """A file's checksum in the algorithm PostgreSQL's backup_manifest uses for it (see
    pg.basebackup.MANIFEST_CHECKSUMS): CRC32C (hardware, ~25 GB/s: next to free) or
    SHA-256, hex as the manifest writes it."""

    def __init__(self, algorithm: str) -> None:
        import hashlib

        if algorithm not in ("CRC32C", "SHA256"):
            raise ValueError(f"unsupported manifest checksum {algorithm!r}")
        self.crc = 0
        self.sha = hashlib.sha256() if algorithm == "SHA256" else None

    def update(self, block: bytes) -> None:
        if self.sha is not None:
            self.sha.update(block)
        else:
            self.crc = google_crc32c.extend(self.crc, block)

    def hexdigest(self) -> str:
        if self.sha is not None:
            return self.sha.hexdigest()
        return self.crc.to_bytes(4, "little").hex()  # PostgreSQL: the uint32's bytes
