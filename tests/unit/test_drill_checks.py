"""The pure parts of a drill's judgement: where recovery ended against the archive, and
the space a drill needs (no server: the scratch server's part is tested in
tests/integration/test_drills.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pgharbor.catalog.backups import Backup
from pgharbor.domain.pitr import RecoveryTarget
from pgharbor.drill.checks import recovery_point
from pgharbor.drill.run import check_space, space_needed
from pgharbor.errors import StorageError
from pgharbor.model import Cluster

SEG = 16 << 20
CLUSTER = cast(Cluster, SimpleNamespace(wal_segment_size=SEG, name="c1"))
NO_SERVER: Any = None


@pytest.mark.parametrize(
    ("archived", "reached", "ok", "says"),
    [
        ({1: {3, 4, 5}}, (1, "0/5800000"), True, "the end of the archive"),
        ({1: {3, 4, 5}}, (1, "0/6000000"), True, "the end of the archive"),  # past the end
        ({1: {3, 4, 5}}, (1, "0/4000000"), False, "segment 000000010000000000000004 is missing"),
        ({1: {3, 5}}, (1, "0/4000000"), False, "the catalog lacks 1 more"),
        ({1: {3, 4, 5}}, None, False, "not promoted"),
        ({}, (1, "0/3000000"), True, "the end of the archive"),  # nothing archived on it
    ],
)
def test_end_of_archive(
    archived: dict[int, set[int]], reached: tuple[int, str] | None, ok: bool, says: str
) -> None:
    got = recovery_point(archived, CLUSTER, RecoveryTarget(), reached, NO_SERVER)
    assert got.ok is ok and says in got.detail, got


def test_lsn_target_must_be_reached() -> None:
    target = RecoveryTarget(kind="lsn", value="0/5000100")
    short = recovery_point({}, CLUSTER, target, (1, "0/5000000"), NO_SERVER)
    assert short.ok is False and "before the target 0/5000100" in short.detail
    assert recovery_point({}, CLUSTER, target, (1, "0/5000200"), NO_SERVER).ok is True


def _backup(logical: int) -> Backup:
    t = datetime(2026, 12, 1, tzinfo=UTC)
    return Backup("b1", "c1", "ok", "", 1, "0/3000028", "0/3000100", t, t, None, logical, 0,
                  None, None, [], None)  # fmt: skip


def test_space_needed_and_the_refusal_names_both_figures(tmp_path: Path) -> None:
    assert space_needed(_backup(1000 << 20), SEG) == int((1000 << 20) * 1.1) + 4 * SEG
    check_space(tmp_path, _backup(1 << 20), SEG)  # a few MiB: room enough here
    with pytest.raises(StorageError, match=r"has [\d.]+ MiB free, .* needs [\d.]+ MiB"):
        check_space(tmp_path, _backup(1 << 60), SEG)
