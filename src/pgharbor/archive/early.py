"""A synchronous ``wal push`` starts on its segment before it knows anything else.

Hashing and compressing 16 MiB take ~40 ms of CPU, reading the settings, importing the
push path and asking the catalog ~20 ms of Python. They do not depend on each other, so
``run_hot`` starts this before any of the rest: the segment is mapped and hashed on one
thread at once, compressed by zstd's own threads as soon as the settings name the
algorithm and level, while the main thread carries on (SHA-256 and zstd release the
GIL). Nothing here decides anything: the push validates the file and the cluster first,
as before, and simply finds the hash and the payload ready (or waits for them). Any
trouble (the file is missing, too small to matter, unreadable) and this steps aside:
the push reads the file itself and reports it as it always did.
"""

from __future__ import annotations

import hashlib
import os
import threading

from pgharbor import envelope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pgharbor.settings import Settings

#: Files at least this big (segments) are mapped, not read: no 16 MiB copy, no page
#: faults of a fresh buffer (~7 ms of a push); smaller ones (history, backup labels)
#: are read.
MAP_AT = 1 << 20

_started: dict[str, Early] = {}


class MappedFile:
    """A WAL file mapped read-only, with the identity it had when mapped: PostgreSQL never
    writes a segment it waits to see archived, and ``unchanged`` checks that before
    anything derived from the bytes is stored (a file being rewritten fails the push)."""

    __slots__ = ("path", "view", "_map", "_stamp")  # noqa: RUF023

    def __init__(self, path: str, fd: int, size: int, stamp: tuple[int, ...]) -> None:
        import mmap

        self.path, self._stamp = path, stamp
        self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED)
        self.view = memoryview(self._map)

    def unchanged(self) -> bool:
        try:
            return _stamp(os.stat(self.path)) == self._stamp
        except OSError:
            return False

    def close(self) -> None:
        """Unmap now, unless a compression still reads the view (a file every target
        already held): then the mapping goes when that thread lets go of it."""
        try:
            self.view.release()
            self._map.close()
        except BufferError:
            pass


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def map_open(path: str, f: Any) -> MappedFile | None:
    """The open file ``f`` mapped when it is big enough (a segment), else None."""
    st = os.fstat(f.fileno())
    if st.st_size < MAP_AT:
        return None
    return MappedFile(path, f.fileno(), st.st_size, _stamp(st))


class Early:
    """The segment at ``path``, mapped, its SHA-256 under way, then its payload."""

    __slots__ = (  # noqa: RUF023
        "path",
        "mapped",
        "data",
        "key",
        "_sha",
        "_payload",
        "_error",
        "_hasher",
        "_packer",
    )

    def __init__(self, path: str, mapped: MappedFile) -> None:
        self.path, self.mapped, self.data = path, mapped, mapped.view
        self._sha: str | None = None
        self._payload: bytes | None = None
        self._error: BaseException | None = None
        self._hasher = threading.Thread(target=self._hash, daemon=True)
        self._hasher.start()
        self._packer: threading.Thread | None = None
        self.key: tuple[str, int] | None = None

    def _hash(self) -> None:
        try:
            self._sha = hashlib.sha256(self.data).hexdigest()
        except BaseException as exc:
            self._error = exc

    def compress(self, algorithm: str, level: int, threads: int) -> None:
        def pack() -> None:
            try:
                self._payload = envelope.compress(self.data, algorithm, level, threads)
            except BaseException as exc:
                self._error = exc

        self.key = (algorithm, level)
        self._packer = threading.Thread(target=pack, daemon=True)
        self._packer.start()

    def sha256(self) -> str:
        self._hasher.join()
        if self._sha is None:
            raise self._error or RuntimeError("hash failed")
        return self._sha

    def payload(self, algorithm: str, level: int) -> bytes | None:
        """The compressed bytes, if they were made with these settings (else None)."""
        if self._packer is None or self.key != (algorithm, level):
            return None
        self._packer.join()
        if self._payload is None:
            raise self._error or RuntimeError("compression failed")
        return self._payload


def push_threads() -> int:
    """zstd threads for one synchronous push: every core (the file is hashed alongside)."""
    cores = os.cpu_count() or 1
    return cores if cores > 1 else 0


def begin(path: str) -> None:
    """Map and start hashing the segment at ``path`` (best effort: silent on trouble)."""
    name = os.path.basename(path)
    if not (len(name) == 24 or name.endswith(".partial")):
        return  # a history or backup label file: small, read by the push
    try:
        with open(path, "rb") as f:
            mapped = map_open(path, f)
    except Exception:
        return
    if mapped is not None:
        _started[os.path.abspath(path)] = Early(path, mapped)


def compress_started(settings: Settings, threads: int) -> None:
    """The settings are known: start compressing what ``begin`` mapped."""
    for early in _started.values():
        if early._packer is None:
            early.compress(settings.compression, settings.compression_level, threads)


def take(path: str) -> Early | None:
    """What ``begin`` started for ``path`` (once), or None."""
    return _started.pop(os.path.abspath(path), None)
