"""Archived WAL: listing copies, catching up missing ones, verifying and repairing."""

from __future__ import annotations

from dataclasses import dataclass

from pgharbor.archive import verify as wal_verify
from pgharbor.archive.sync import SyncResult
from pgharbor.archive.sync import sync as wal_sync
from pgharbor.catalog.models import WalFile
from pgharbor.services.context import Services


@dataclass(frozen=True)
class VerifyReport:
    result: wal_verify.VerifyResult
    repair: wal_verify.RepairResult | None = None

    @property
    def ok(self) -> bool:
        return self.result.ok


def list_files(svc: Services, cluster: str) -> list[WalFile]:
    return svc.catalog.wal_files(cluster)


def sync(svc: Services, cluster: str) -> SyncResult:
    return wal_sync(svc.settings, cluster)


def verify(svc: Services, cluster: str, *, repair: bool = False) -> VerifyReport:
    """Every copy read back and checked; with ``repair``, each bad copy copied from a
    placement whose copy verified (the copies repaired no longer count as bad)."""
    result = wal_verify.verify(svc.settings, cluster)
    fixed = wal_verify.repair(svc.settings, result) if repair and result.bad else None
    if fixed is not None and not fixed.failed:
        result.bad = []  # every bad copy was replaced by a verified one
    return VerifyReport(result, fixed)
