"""Streaming a base backup from a running server over the replication protocol.

The server does the backup (``BASE_BACKUP``, as ``pg_basebackup`` asks for it); this
client only reads its one COPY stream (PostgreSQL 15+): ``n`` starts an archive (one
tar per tablespace, the data directory last), ``d`` carries tar bytes, ``p`` progress,
``m`` starts the backup_manifest. Unlike ``pg_basebackup -D -`` it handles clusters with
extra tablespaces without writing anything locally.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq.abc import PGresult

from pgharbor.errors import PostgresError

# The checksum of every file in backup_manifest. CRC32C, not SHA-256: the server and the
# backup each hash every byte once more for it, and CRC32C costs next to nothing on both
# sides (hardware) while it still catches a file that differs from what the server read
# (the stored bytes are checked by their SHA-256 chunk ids; pg_verifybackup reads it).
MANIFEST_CHECKSUMS = "CRC32C"


@dataclass(frozen=True)
class Tablespace:
    oid: str | None  # None for the data directory itself
    location: str | None
    size_kb: int


@dataclass
class Archive:
    name: str  # "base.tar" or "<oid>.tar"
    location: str  # the tablespace's path on the server ("" for the data directory)

    @property
    def oid(self) -> str | None:
        return None if self.name == "base.tar" else self.name.removesuffix(".tar")


@dataclass
class BackupPosition:
    lsn: str
    timeline: int


@dataclass
class _State:
    pending: tuple[str, memoryview] | None = None
    done: bool = False
    progress: int = 0
    manifest: bytearray = field(default_factory=bytearray)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class BaseBackupStream:
    """One base backup. Iterate :meth:`archives` (each reader to its end before the next),
    then read :attr:`manifest` and :attr:`stop`."""

    def __init__(
        self, dsn: str, label: str, *, fast_checkpoint: bool = True, timeout: int = 10
    ) -> None:
        params = conninfo_to_dict(dsn)
        params.setdefault("connect_timeout", timeout)
        params["replication"] = "database"
        params.setdefault("application_name", "pgharbor backup")
        self.conn = pq.PGconn.connect(make_conninfo("", **params).encode())
        if self.conn.status != pq.ConnStatus.OK:
            raise PostgresError(
                f"cannot open a replication connection: {self._err()}",
                hint="the role needs REPLICATION and pg_hba.conf a replication line",
            )
        opts = [
            f"LABEL {_quote(label)}",
            "PROGRESS",
            "WAIT false",
            "MANIFEST 'yes'",
            f"MANIFEST_CHECKSUMS {_quote(MANIFEST_CHECKSUMS)}",
            "TABLESPACE_MAP",
            f"CHECKPOINT {_quote('fast' if fast_checkpoint else 'spread')}",
        ]
        self.conn.send_query(f"BASE_BACKUP ({', '.join(opts)})".encode())
        start = self._tuples("backup start")
        self.start = BackupPosition(str(start[0][0]), int(str(start[0][1])))
        self.tablespaces = [
            Tablespace(r[0], r[1], int(r[2] or 0)) for r in self._tuples("tablespace list")
        ]
        res = self.conn.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_OUT:
            raise PostgresError(f"base backup did not start streaming: {self._err(res)}")
        self._state = _State()
        self.stop: BackupPosition | None = None

    @property
    def total_bytes(self) -> int:
        return sum(t.size_kb for t in self.tablespaces) * 1024

    @property
    def progress(self) -> int:
        return self._state.progress

    @property
    def manifest(self) -> bytes:
        return bytes(self._state.manifest)

    def _err(self, res: PGresult | None = None) -> str:
        msg = (
            res.error_message if res is not None and res.error_message else self.conn.error_message
        )
        text = msg.decode(errors="replace").strip()
        return text.splitlines()[0] if text else "unknown error"

    def _tuples(self, what: str) -> list[list[str | None]]:
        res = self.conn.get_result()
        if res is None or res.status != pq.ExecStatus.TUPLES_OK:
            raise PostgresError(f"base backup failed at {what}: {self._err(res)}")
        return [
            [None if (v := res.get_value(i, j)) is None else v.decode() for j in range(res.nfields)]
            for i in range(res.ntuples)
        ]

    def _copy_data(self) -> tuple[int, memoryview]:
        """The next COPY message (libpq's buffer itself, not a copy), waiting for the
        socket without holding the GIL: a thread receives while others compute."""
        while True:
            n, data = self.conn.get_copy_data(1)
            if n != 0:
                return n, data
            select.select([self.conn.socket], [], [])
            try:
                self.conn.consume_input()
            except psycopg.OperationalError:
                raise PostgresError(f"base backup stream failed: {self._err()}") from None

    def _message(self) -> tuple[str, memoryview] | None:
        st = self._state
        if st.pending is not None:
            msg, st.pending = st.pending, None
            return msg
        if st.done:
            return None
        while True:
            n, data = self._copy_data()
            if n == -1:
                st.done = True
                self._finish()
                return None
            if n == -2:
                raise PostgresError(f"base backup stream failed: {self._err()}")
            kind = chr(data[0])
            if kind == "p":
                st.progress = int.from_bytes(data[1:9], "big")
                continue
            return kind, data[1:]

    def _finish(self) -> None:
        end = self._tuples("backup stop")  # the stop position follows the COPY stream
        self.stop = BackupPosition(str(end[0][0]), int(str(end[0][1])))
        while (res := self.conn.get_result()) is not None:
            if res.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                raise PostgresError(f"base backup failed: {self._err(res)}")

    def archives(self) -> Iterator[tuple[Archive, Iterator[memoryview]]]:
        """Each archive with its tar bytes, as received (read each to its end, on any
        one thread, before asking for the next)."""
        while (msg := self._message()) is not None:
            kind, payload = msg
            if kind == "n":
                name, location = (p.decode() for p in bytes(payload).split(b"\0")[:2])
                data = self._payloads()
                yield Archive(name, location), data
                for _ in data:  # tar's trailing padding the reader did not need
                    pass
            elif kind == "m":
                self._read_manifest()
            elif kind == "d":
                raise PostgresError("base backup stream: data outside an archive")

    def _payloads(self) -> Iterator[memoryview]:
        """The current archive's bytes; they end where the stream starts something else."""
        while (msg := self._message()) is not None:
            if msg[0] != "d":
                self._state.pending = msg
                return
            yield msg[1]

    def _read_manifest(self) -> None:
        while (msg := self._message()) is not None:
            if msg[0] != "d":
                self._state.pending = msg
                return
            self._state.manifest += msg[1]

    def close(self) -> None:
        self.conn.finish()
