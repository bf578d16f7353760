"""Chunk ids on local disk, so memory does not grow with the data.

A backup asks, for every 64 KiB chunk of the database, whether the target already holds
it; a restore asks where each chunk lies; a garbage collection needs the set of chunks
that every backup on the target uses. Held in Python dicts and sets these cost ~200
bytes per chunk: 3 MiB per GB of data, 3 GiB per TB. Here they live in a private,
temporary SQLite database (SQLite's own: created in the temp folder, deleted when the
connection closes) with a bounded page cache, so memory stays flat however large the
database and the target are.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

CACHE_KIB = 2 * 1024  # SQLite page cache per database: the memory bound
FILTER_BITS = 1 << 24  # the index's in-memory filter: 2 MiB, whatever the store holds


@dataclass(frozen=True)
class Location:
    pack: str
    offset: int
    length: int
    size: int  # raw size


class _TempDB:
    """One private temporary database, shared by the threads of a backup or restore."""

    def __init__(self, ddl: str) -> None:
        # "" = a private temporary on-disk database, removed on close (see SQLite's docs)
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            f"cache_size = -{CACHE_KIB}",
            "temp_store = FILE",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(ddl)
        self._lock = threading.Lock()

    def _one(self, sql: str, args: tuple[object, ...] = ()) -> tuple[object, ...] | None:
        with self._lock:
            row: tuple[object, ...] | None = self._db.execute(sql, args).fetchone()
            return row

    def _many(self, sql: str, rows: Iterable[tuple[object, ...]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _count(self, table: str) -> int:
        row = self._one(f"SELECT count(*) FROM {table}")
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def _ids(self, table: str) -> Iterator[bytes]:
        last = b""
        while True:  # in batches, so no cursor stays open across other threads' calls
            with self._lock:
                batch = self._db.execute(
                    f"SELECT cid FROM {table} WHERE cid > ? ORDER BY cid LIMIT 4096", (last,)
                ).fetchall()
            if not batch:
                return
            yield from (bytes(r[0]) for r in batch)
            last = batch[-1][0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _bits(cid: bytes) -> tuple[int, int]:
    """Two positions in the filter, from the id's own bytes (ids are SHA-256 or HMAC
    digests: uniform already)."""
    return (
        int.from_bytes(cid[:4], "little") % FILTER_BITS,
        int.from_bytes(cid[4:8], "little") % FILTER_BITS,
    )


class ChunkIndex(_TempDB):
    """chunk id -> Location, for every chunk of one target's store.

    A fixed-size filter in memory (two bits per id, a Bloom filter) answers most
    lookups of absent chunks without asking SQLite: every chunk of a first backup. It
    never says "absent" for a chunk that is there; as the index grows it only says
    "maybe" more often (1 % of absent chunks at a million ids), and SQLite decides."""

    def __init__(self) -> None:
        super().__init__(
            "CREATE TABLE loc (cid BLOB PRIMARY KEY, pack TEXT NOT NULL, off INTEGER NOT NULL,"
            " len INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID"
        )
        self._filter = bytearray(FILTER_BITS // 8)

    def _maybe(self, cid: bytes) -> bool:
        a, b = _bits(cid)
        f = self._filter
        return bool(f[a >> 3] & (1 << (a & 7))) and bool(f[b >> 3] & (1 << (b & 7)))

    def get(self, cid: bytes) -> Location | None:
        if not self._maybe(cid):
            return None
        row = self._one("SELECT pack, off, len, size FROM loc WHERE cid = ?", (cid,))
        return None if row is None else Location(*row)  # type: ignore[arg-type]

    def get_many(self, cids: list[bytes]) -> dict[bytes, Location]:
        """The locations of those of ``cids`` the index holds, in a few queries."""
        maybe = [c for c in cids if self._maybe(c)]
        found: dict[bytes, Location] = {}
        for at in range(0, len(maybe), 500):  # well under SQLite's parameter limit
            part = maybe[at : at + 500]
            marks = ",".join("?" * len(part))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT cid, pack, off, len, size FROM loc WHERE cid IN ({marks})", part
                ).fetchall()
            for cid, *loc in rows:
                found[bytes(cid)] = Location(*loc)
        return found

    def __getitem__(self, cid: bytes) -> Location:
        loc = self.get(cid)
        if loc is None:
            raise KeyError(cid.hex())
        return loc

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, bytes) and self.get(cid) is not None

    def add(self, cid: bytes, loc: Location) -> None:
        """Record loc unless the chunk is already known (the first location stays)."""
        self.add_many([(cid, loc)])

    def add_many(self, items: Iterable[tuple[bytes, Location]]) -> None:
        f = self._filter

        def rows() -> Iterator[tuple[object, ...]]:
            for c, x in items:
                a, b = _bits(c)
                f[a >> 3] |= 1 << (a & 7)  # before the row: never absent while it is there
                f[b >> 3] |= 1 << (b & 7)
                yield c, x.pack, x.offset, x.length, x.size

        self._many("INSERT OR IGNORE INTO loc VALUES (?, ?, ?, ?, ?)", rows())

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM loc")
            self._filter = bytearray(FILTER_BITS // 8)

    def __len__(self) -> int:
        return self._count("loc")

    def __iter__(self) -> Iterator[bytes]:
        return self._ids("loc")


class ChunkSet(_TempDB):
    """A set of chunk ids: the ones the backups on a target use."""

    def __init__(self) -> None:
        super().__init__("CREATE TABLE ids (cid BLOB PRIMARY KEY) WITHOUT ROWID")

    def add_many(self, cids: Iterable[bytes]) -> None:
        self._many("INSERT OR IGNORE INTO ids VALUES (?)", ((c,) for c in cids))

    def __contains__(self, cid: object) -> bool:
        return self._one("SELECT 1 FROM ids WHERE cid = ?", (cid,)) is not None

    def __len__(self) -> int:
        return self._count("ids")

    def __iter__(self) -> Iterator[bytes]:
        return self._ids("ids")
