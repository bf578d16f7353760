"""Result models read from the catalog: plain dataclasses, rendered as text or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Target:
    id: str
    name: str
    url: str
    active: bool
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    idc: str
    platform: str
    software: str
    version: str
    version_num: int
    host: str
    port: int
    dsn: str
    system_identifier: str
    wal_segment_size: int
    required_copies: int
    active: bool
    created_at: datetime
    modified_at: datetime
    archive_async: bool = False


@dataclass(frozen=True)
class Placement:
    cluster: str
    target: str
    target_id: str
    url: str
    priority: int
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class WalCopy:
    target: str
    status: str
    stored_size: int | None
    archived_at: datetime
    detail: str | None = None


@dataclass(frozen=True)
class WalFile:
    name: str
    timeline: int
    size: int
    checksum: str
    copies: list[WalCopy] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # active placements without an ok copy
