"""What the hot path knows about a cluster, and where it keeps it when the catalog is away.

On the database host, below ``state_dir``:

    clusters/<name>.json   the cluster's identity and placements, refreshed from the
                           catalog on every successful contact (the local cache)
    journal/<name>.jsonl   WAL copy rows that could not reach the catalog; replayed
                           (idempotent upserts) at the next successful contact
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys

from pgharbor.catalog import lite
from pgharbor.catalog.urls import parse_catalog_url
from pgharbor.errors import CatalogError, CatalogRejected, ConfigError, NotFound
from pgharbor.model import Cluster

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from pgharbor.settings import Settings


def _write_atomic(path: str, data: bytes) -> None:
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _warn(text: str) -> None:
    print(f"pgharbor: warning: {text}", file=sys.stderr)


# a journal record: one line, the row as JSON, a tab, the CRC-32 of the JSON in hex
_TAB = b"\t"


def _frame(row: Mapping[str, Any]) -> bytes:
    import binascii

    body = json.dumps(row, sort_keys=True).encode()
    return body + _TAB + f"{binascii.crc32(body):08x}".encode() + b"\n"


def _unframe(line: bytes) -> dict[str, Any] | str:
    """The row of one journal line, or why it is not one (torn, garbage, wrong shape)."""
    import binascii

    body, tab, crc = line.rpartition(_TAB)
    if tab:
        if crc.strip() != f"{binascii.crc32(body):08x}".encode():
            return "checksum mismatch (a torn or damaged write)"
    else:
        body = line  # written before records were framed: plain JSON
    try:
        row = json.loads(body)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(row, dict) or not all(
        isinstance(row.get(k), str) for k in ("cluster_id", "target_id", "name", "archived_at")
    ):
        return "not a WAL copy row"
    return row


class LocalState:
    """The cache and the journal of one cluster on the database host. Every file is
    created 0600 in 0700 folders; a record that cannot be used is set aside (a
    quarantine file named in one warning line), never a reason for archiving to stop."""

    def __init__(self, state_dir: str, cluster: str) -> None:
        self.cache = os.path.join(state_dir, "clusters", f"{cluster}.json")
        self.journal = os.path.join(state_dir, "journal", f"{cluster}.jsonl")
        self.quarantine = os.path.join(state_dir, "journal", f"{cluster}.bad")
        self.cluster = cluster

    def _ensure(self, path: str) -> None:
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create state folder {folder}: {exc.strerror}") from None

    def save_cache(self, data: Mapping[str, Any]) -> None:
        try:
            with open(self.cache, "rb") as f:
                if json.loads(f.read()) == data:
                    return  # the usual case: nothing changed
        except (OSError, ValueError, RecursionError):
            pass
        blob = json.dumps(data, sort_keys=True, indent=1).encode()
        try:
            self._ensure(self.cache)
            _write_atomic(self.cache, blob)
        except (OSError, ConfigError) as exc:
            _warn(f"cannot write placement cache {self.cache}: {exc}")

    def load_cache(self) -> dict[str, Any] | None:
        """The cached cluster, or None; a damaged cache is set aside (warning)."""
        try:
            with open(self.cache, "rb") as f:
                data = json.loads(f.read())
            Cluster.from_dict(data)  # the shape the hot path needs
            return dict(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            aside = f"{self.cache}.bad"
            try:
                os.replace(self.cache, aside)
                _warn(f"placement cache {self.cache} is unreadable ({exc!r}); set aside as {aside}")
            except OSError:
                _warn(f"placement cache {self.cache} is unreadable ({exc!r})")
            return None

    def _lock_journal(self) -> int:
        """The journal's fd, open for appending and reading, with its flock held: release
        with _unlock_journal."""
        self._ensure(self.journal)
        fd = os.open(self.journal, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _unlock_journal(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def append_journal(self, rows: list[dict[str, Any]]) -> None:
        """Append rows durably (one write; a torn tail is found by its checksum)."""
        fd = self._lock_journal()
        try:
            data = b"".join(_frame(r) for r in rows)
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            self._unlock_journal(fd)

    def _set_aside(self, records: list[tuple[bytes, str]]) -> bool:
        """Append unusable records to the quarantine file; False if that failed too."""
        from datetime import UTC, datetime

        when = datetime.now(UTC).isoformat(timespec="seconds")
        text = b"".join(
            f"# {when} {why}\n".encode() + raw.rstrip(b"\n") + b"\n" for raw, why in records
        )
        try:
            fd = os.open(self.quarantine, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, text)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _warn(f"{len(records)} unusable journal record(s) kept in {self.journal}: {exc}")
            return False
        reasons = sorted({why for _, why in records})
        _warn(
            f"{len(records)} unusable journal record(s) set aside in {self.quarantine} "
            f"({'; '.join(reasons)[:300]})"
        )
        return True

    def _read_journal(self, fd: int) -> tuple[list[dict[str, Any]], list[tuple[bytes, str]]]:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        lines = b"".join(chunks).split(b"\n")
        torn = lines.pop()  # what follows the last newline: empty unless a write was cut
        rows: list[dict[str, Any]] = []
        bad: list[tuple[bytes, str]] = []
        for line in lines:
            if not line.strip():
                continue
            row = _unframe(line)
            if isinstance(row, str):
                bad.append((line, row))
            else:
                rows.append(row)
        if torn.strip():
            bad.append((torn, "torn last record (no end of line)"))
        return rows, bad

    def flush_journal(self, conn: Any, kind: str, extra: list[dict[str, Any]]) -> int:
        """Write the journal's rows plus ``extra`` to the catalog, then empty the journal.
        A crash in between replays rows that upsert to the same result: never lost, never
        doubled. Records that are not rows, and rows the catalog refuses, are set aside.
        Returns how many journal rows were replayed."""
        if not os.path.exists(self.journal):
            self._upsert(conn, kind, extra, [])
            return 0
        fd = self._lock_journal()
        try:
            pending, bad = self._read_journal(fd)
            keep = bool(bad) and not self._set_aside(bad)
            rejected: list[tuple[bytes, str]] = []
            self._upsert(conn, kind, pending + extra, rejected)
            if rejected:
                keep = not self._set_aside(rejected) or keep
            if not keep:
                os.ftruncate(fd, 0)
                os.fsync(fd)
        finally:
            self._unlock_journal(fd)
        return len(pending)

    @staticmethod
    def _upsert(
        conn: Any, kind: str, rows: list[dict[str, Any]], rejected: list[tuple[bytes, str]]
    ) -> None:
        """All rows in one transaction; when the catalog refuses the batch, row by row,
        so that one bad row (a target removed meanwhile) never holds back the others."""
        try:
            lite.upsert_copies(conn, kind, rows)
            conn.commit()
            return
        except CatalogRejected:
            conn.rollback()
        for row in rows:
            try:
                lite.upsert_copies(conn, kind, [row])
                conn.commit()
            except CatalogRejected as exc:
                conn.rollback()
                rejected.append((json.dumps(row, sort_keys=True, default=str).encode(), str(exc)))


class HotSession:
    """A wal push/fetch's view of the cluster: from the catalog when it answers, else from
    the local cache. Rows recorded go to the catalog, or to the journal when it is away."""

    def __init__(self, settings: Settings, cluster: str) -> None:
        self.settings = settings
        self.state = LocalState(settings.state_dir, cluster)
        self.conn: Any = None
        self.kind = ""
        self.catalog_error: str | None = None
        url = settings.require_catalog()
        cu = self.url = parse_catalog_url(url)
        self.kind = cu.kind
        data: dict[str, Any] | None = None
        try:
            self.conn = lite.connect(cu, settings.catalog_timeout)
            data = lite.load_cluster(self.conn, cu.kind, cluster)
        except NotFound:
            self.close()
            raise
        except CatalogError as exc:
            self.close()
            self.catalog_error = str(exc)
            data = self.state.load_cache()
            if data is None:
                raise CatalogError(
                    f"{exc}; and no cached placements for cluster {cluster!r} in {self.state.cache}"
                ) from None
            _warn(f"{exc}; using cached placements for {cluster!r}")
        else:
            self.state.save_cache(data)
        self.ctx = Cluster.from_dict(data)

    def record(self, rows: list[dict[str, Any]]) -> str:
        """Store rows in the catalog (replaying the journal too), or journal them. Never
        raises: the files are stored by then, and the catalog is only their index.
        Returns "catalog", "journal" or "nowhere" (a warning says why)."""
        if self.conn is not None:
            try:
                self.state.flush_journal(self.conn, self.kind, rows)
                return "catalog"
            except Exception as exc:
                self.catalog_error = str(exc) or type(exc).__name__
                with contextlib.suppress(Exception):
                    self.conn.rollback()
        if not rows:
            return "journal"
        try:
            self.state.append_journal(rows)
        except Exception as exc:
            _warn(
                f"{len(rows)} copy row(s) not recorded (catalog: {self.catalog_error}; journal "
                f"{self.state.journal}: {exc}); the files are stored on the targets, and "
                f"`pgharbor wal sync {self.state.cluster}` records what the catalog lacks"
            )
            return "nowhere"
        _warn(
            f"catalog unavailable ({self.catalog_error}); "
            f"{len(rows)} row(s) kept in the journal {self.state.journal}"
        )
        return "journal"

    def recorded_checksums(self, name: str) -> set[str] | None:
        """The checksums of the copies of ``name`` the catalog records, or None when the
        catalog cannot say (it is away: then nothing is trusted). Rare (a corrupt stored
        copy), and called from push threads: a connection of its own."""
        try:
            conn = lite.connect(self.url, self.settings.catalog_timeout)
            try:
                return lite.recorded_checksums(conn, self.kind, self.ctx.id, name)
            finally:
                conn.close()
        except Exception:
            return None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
