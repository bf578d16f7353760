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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgharbor.catalog import lite
from pgharbor.catalog.urls import parse_catalog_url
from pgharbor.errors import CatalogError, ConfigError, NotFound
from pgharbor.settings import Settings


@dataclass(frozen=True)
class Placement:
    target_id: str
    target: str
    url: str
    priority: int


@dataclass(frozen=True)
class ClusterContext:
    id: str
    name: str
    system_identifier: int
    wal_segment_size: int
    required_copies: int
    active: bool
    placements: tuple[Placement, ...]
    archive_async: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClusterContext:
        return cls(
            id=d["id"],
            name=d["name"],
            system_identifier=int(d["system_identifier"]),
            wal_segment_size=int(d["wal_segment_size"]),
            required_copies=int(d["required_copies"]),
            active=bool(d.get("active", True)),
            placements=tuple(Placement(**p) for p in d["placements"]),
            archive_async=bool(d.get("archive_async", False)),
        )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LocalState:
    """The cache and the journal of one cluster on the database host."""

    def __init__(self, state_dir: Path, cluster: str) -> None:
        self.cache = state_dir / "clusters" / f"{cluster}.json"
        self.journal = state_dir / "journal" / f"{cluster}.jsonl"
        self.cluster = cluster

    def _ensure(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create state folder {path.parent}: {exc.strerror}") from None

    def save_cache(self, data: Mapping[str, Any]) -> None:
        blob = json.dumps(data, sort_keys=True, indent=1).encode()
        try:
            if self.cache.read_bytes() == blob:
                return
        except OSError:
            pass
        self._ensure(self.cache)
        try:
            _write_atomic(self.cache, blob)
        except OSError as exc:
            print(
                f"pgharbor: warning: cannot write placement cache {self.cache}: {exc}",
                file=sys.stderr,
            )

    def load_cache(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.cache.read_text())
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"placement cache {self.cache} is unreadable: {exc}") from None

    @contextlib.contextmanager
    def _locked_journal(self) -> Iterator[Any]:
        self._ensure(self.journal)
        with open(self.journal, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def append_journal(self, rows: list[dict[str, Any]]) -> None:
        with self._locked_journal() as f:
            f.write(b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())

    def flush_journal(self, conn: Any, kind: str, extra: list[dict[str, Any]]) -> int:
        """Write the journal's rows plus ``extra`` to the catalog in one transaction, then
        empty the journal. A crash in between replays rows that upsert to the same
        result: never lost, never doubled. Returns how many journal rows were replayed."""
        if not self.journal.exists():
            lite.upsert_copies(conn, kind, extra)
            conn.commit()
            return 0
        with self._locked_journal() as f:
            f.seek(0)
            pending = [json.loads(line) for line in f.read().splitlines() if line.strip()]
            lite.upsert_copies(conn, kind, pending + extra)
            conn.commit()
            f.truncate(0)
            f.flush()
            os.fsync(f.fileno())
        return len(pending)

    def journal_rows(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(x) for x in self.journal.read_text().splitlines() if x.strip()]
        except FileNotFoundError:
            return []


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
        cu = parse_catalog_url(url)
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
            print(
                f"pgharbor: warning: {exc}; using cached placements for {cluster!r}",
                file=sys.stderr,
            )
        else:
            self.state.save_cache(data)
        self.ctx = ClusterContext.from_dict(data)

    def record(self, rows: list[dict[str, Any]]) -> str:
        """Store rows in the catalog (replaying the journal too), or journal them.
        Returns "catalog" or "journal"."""
        if self.conn is not None:
            try:
                self.state.flush_journal(self.conn, self.kind, rows)
                return "catalog"
            except (CatalogError, OSError) as exc:
                self.catalog_error = str(exc)
                with contextlib.suppress(Exception):
                    self.conn.rollback()
        if rows:
            self.state.append_journal(rows)
            print(
                f"pgharbor: warning: catalog unavailable ({self.catalog_error}); "
                f"{len(rows)} row(s) kept in the journal {self.state.journal}",
                file=sys.stderr,
            )
        return "journal"

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
