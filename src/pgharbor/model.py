"""The one model of the fleet: a target, a placement, a cluster. The archive hot path
(loaded from the catalog by catalog/lite.py, or from the local cache), the catalog layer
and every service use these same types.

Lean (the hot path imports it): plain value classes (pgharbor.plain), no dataclasses or
typing at run time. A cluster's ``system_identifier`` is its decimal text, as PostgreSQL
prints it and as the catalog, manifests and claims store it; ``sysid`` is the number a
WAL page header carries.
"""

from __future__ import annotations

from pgharbor.plain import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import Any, Final


class Target(FrozenRecord):
    __slots__ = ("id", "name", "url", "active", "created_at", "modified_at")  # noqa: RUF023
    id: Final[str]
    name: Final[str]
    url: Final[str]
    active: Final[bool]
    created_at: Final[datetime | None]
    modified_at: Final[datetime | None]

    def __init__(
        self,
        id: str,
        name: str,
        url: str,
        active: bool = True,
        created_at: datetime | None = None,
        modified_at: datetime | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.url = url
        self.active = active
        self.created_at = created_at
        self.modified_at = modified_at


class Placement(FrozenRecord):
    """A cluster's files on a target; lower priorities are written and read first."""

    __slots__ = (  # noqa: RUF023
        "target_id",
        "target",
        "url",
        "priority",
        "active",
        "cluster",
        "created_at",
    )
    target_id: Final[str]
    target: Final[str]
    url: Final[str]
    priority: Final[int]
    active: Final[bool]
    cluster: Final[str]
    created_at: Final[datetime | None]

    def __init__(
        self,
        target_id: str,
        target: str,
        url: str,
        priority: int,
        active: bool = True,
        cluster: str = "",
        created_at: datetime | None = None,
    ) -> None:
        self.target_id = target_id
        self.target = target
        self.url = url
        self.priority = priority
        self.active = active
        self.cluster = cluster
        self.created_at = created_at

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Placement:
        fields = cls.__slots__
        return cls(**{k: v for k, v in d.items() if k in fields})


class Cluster(FrozenRecord):
    """A PostgreSQL cluster of the fleet. ``placements``: the active ones, in priority
    order, where the caller loaded them (the hot path always does); empty otherwise."""

    __slots__ = (  # noqa: RUF023
        "id",
        "name",
        "system_identifier",
        "wal_segment_size",
        "required_copies",
        "active",
        "archive_async",
        "placements",
        "idc",
        "platform",
        "software",
        "version",
        "version_num",
        "host",
        "port",
        "dsn",
        "created_at",
        "modified_at",
    )
    id: Final[str]
    name: Final[str]
    system_identifier: Final[str]
    wal_segment_size: Final[int]
    required_copies: Final[int]
    active: Final[bool]
    archive_async: Final[bool]
    placements: Final[tuple[Placement, ...]]
    idc: Final[str]
    platform: Final[str]
    software: Final[str]
    version: Final[str]
    version_num: Final[int]
    host: Final[str]
    port: Final[int]
    dsn: Final[str]
    created_at: Final[datetime | None]
    modified_at: Final[datetime | None]

    def __init__(
        self,
        id: str,
        name: str,
        system_identifier: str | int,
        wal_segment_size: int,
        required_copies: int = 1,
        active: bool = True,
        archive_async: bool = False,
        placements: tuple[Placement, ...] = (),
        idc: str = "",
        platform: str = "",
        software: str = "postgresql",
        version: str = "",
        version_num: int = 0,
        host: str = "",
        port: int = 0,
        dsn: str = "",
        created_at: datetime | None = None,
        modified_at: datetime | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.system_identifier = str(system_identifier)
        self.wal_segment_size = int(wal_segment_size)
        self.required_copies = int(required_copies)
        self.active = bool(active)
        self.archive_async = bool(archive_async)
        self.placements = tuple(placements)
        self.idc = idc
        self.platform = platform
        self.software = software
        self.version = version
        self.version_num = int(version_num)
        self.host = host
        self.port = int(port)
        self.dsn = dsn
        self.created_at = created_at
        self.modified_at = modified_at

    @property
    def sysid(self) -> int:
        """The system identifier as a WAL page header carries it."""
        return int(self.system_identifier)

    def with_placements(self, placements: tuple[Placement, ...]) -> Cluster:
        """The same cluster, seen through other placements (copies read from some)."""
        d = self.as_dict()
        d["placements"] = tuple(placements)
        return Cluster(**d)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cluster:
        """From the catalog's lean loader or the local cache (an older cache holds only
        the fields the hot path needs: the others take their defaults)."""
        fields = set(cls.__slots__) - {"placements", "created_at", "modified_at"}
        values: dict[str, Any] = {k: v for k, v in d.items() if k in fields}
        values["placements"] = tuple(Placement.from_dict(p) for p in d.get("placements", ()))
        return cls(**values)

    def cache_dict(self) -> dict[str, Any]:
        """What the local cache keeps (JSON): everything but the timestamps."""
        d = {k: v for k, v in self.as_dict().items() if k not in ("created_at", "modified_at")}
        d["placements"] = [
            {k: v for k, v in p.as_dict().items() if k != "created_at"} for p in self.placements
        ]
        return d
