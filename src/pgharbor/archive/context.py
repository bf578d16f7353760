"""What the hot path knows about a cluster, and where it keeps it when the catalog is away.

On the database host, below ``state_dir``:

    clusters/<name>.json   the cluster's identity and placements, refreshed from the
                           catalog on every successful contact (the local cache)
    journal/<name>.jsonl   WAL copy rows that could not reach the catalog; replayed
                           (idempotent upserts) at the next successful contact
"""

from __future__ import annotations

import fcntl
import os
import sys

from pgharbor import fastjson
from pgharbor.catalog import lite
from pgharbor.catalog.urls import parse_catalog_url
from pgharbor.errors import CatalogError, ConfigError, NotFound
from pgharbor.plain import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, Any, Final

    from pgharbor.settings import Settings


class Placement(FrozenRecord):
    __slots__ = ("target_id", "target", "url", "priority")  # noqa: RUF023
    target_id: Final[str]
    target: Final[str]
    url: Final[str]
    priority: Final[int]

    def __init__(self, target_id: str, target: str, url: str, priority: int) -> None:
        self.target_id = target_id
        self.target = target
        self.url = url
        self.priority = priority


class ClusterContext(FrozenRecord):
    __slots__ = (  # noqa: RUF023
        "id",
        "name",
        "system_identifier",
        "wal_segment_size",
        "required_copies",
        "active",
        "placements",
        "archive_async",
    )
    id: Final[str]
    name: Final[str]
    system_identifier: Final[int]
    wal_segment_size: Final[int]
    required_copies: Final[int]
    active: Final[bool]
    placements: Final[tuple[Placement, ...]]
    archive_async: Final[bool]

    def __init__(
        self,
        id: str,
        name: str,
        system_identifier: int,
        wal_segment_size: int,
        required_copies: int,
        active: bool,
        placements: tuple[Placement, ...],
        archive_async: bool = False,
    ) -> None:
        self.id = id
        self.name = name
        self.system_identifier = system_identifier
        self.wal_segment_size = wal_segment_size
        self.required_copies = required_copies
        self.active = active
        self.placements = placements
        self.archive_async = archive_async

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


def _write_atomic(path: str, data: bytes) -> None:
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LocalState:
    """The cache and the journal of one cluster on the database host."""

    def __init__(self, state_dir: str, cluster: str) -> None:
        self.cache = os.path.join(state_dir, "clusters", f"{cluster}.json")
        self.journal = os.path.join(state_dir, "journal", f"{cluster}.jsonl")
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
                if fastjson.loads(f.read()) == data:
                    return  # the usual case: nothing changed, and no json import
        except (OSError, ValueError):
            pass
        import json

        blob = json.dumps(data, sort_keys=True, indent=1).encode()
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
            with open(self.cache) as f:
                data: dict[str, Any] = fastjson.loads(f.read())
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"placement cache {self.cache} is unreadable: {exc}") from None

    def _lock_journal(self) -> IO[bytes]:
        """The journal, open for appending and reading, with its flock held: release with
        _unlock_journal."""
        self._ensure(self.journal)
        # closed by _unlock_journal
        f = open(self.journal, "a+b")  # noqa: SIM115
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except BaseException:
            f.close()
            raise
        return f

    @staticmethod
    def _unlock_journal(f: IO[bytes]) -> None:
        try:
            fcntl.flock(f, fcntl.LOCK_UN)
        finally:
            f.close()

    def append_journal(self, rows: list[dict[str, Any]]) -> None:
        import json  # only while the catalog is away

        f = self._lock_journal()
        try:
            f.write(b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        finally:
            self._unlock_journal(f)

    def flush_journal(self, conn: Any, kind: str, extra: list[dict[str, Any]]) -> int:
        """Write the journal's rows plus ``extra`` to the catalog in one transaction, then
        empty the journal. A crash in between replays rows that upsert to the same
        result: never lost, never doubled. Returns how many journal rows were replayed."""
        if not os.path.exists(self.journal):
            lite.upsert_copies(conn, kind, extra)
            conn.commit()
            return 0
        f = self._lock_journal()
        try:
            f.seek(0)
            pending = [fastjson.loads(line) for line in f.read().splitlines() if line.strip()]
            lite.upsert_copies(conn, kind, pending + extra)
            conn.commit()
            f.truncate(0)
            f.flush()
            os.fsync(f.fileno())
        finally:
            self._unlock_journal(f)
        return len(pending)

    def journal_rows(self) -> list[dict[str, Any]]:
        try:
            with open(self.journal) as f:
                return [fastjson.loads(x) for x in f.read().splitlines() if x.strip()]
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
                try:  # noqa: SIM105 - no contextlib import on the hot path
                    self.conn.rollback()
                except Exception:
                    pass
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
            try:  # noqa: SIM105 - no contextlib import on the hot path
                self.conn.close()
            except Exception:
                pass
            self.conn = None
