"""Results read from the catalog (the fleet itself is modelled in pgharbor.model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
