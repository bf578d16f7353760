"""The catalog's gap records (catalog.gaps): refresh keeps a gap's history across runs,
losses are never downgraded, acknowledgements survive a gap shrinking, and
unacknowledged_gaps (retention's guard) sees only lost, unacknowledged gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgharbor.catalog.gaps import GapRepo, unacknowledged_gaps
from pgharbor.catalog.repo import Catalog
from pgharbor.domain.gaps import LOST, PENDING, RESOLVED, Run
from pgharbor.domain.wal import segment_name
from pgharbor.errors import Conflict, NotFound
from tests.fixtures.catalogs import add_test_cluster, init_catalog

SEG = 16 * 1024 * 1024
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    c = init_catalog(f"sqlite:///{tmp_path}/catalog.db")
    add_test_cluster(c)
    return c


def seg(n: int, tl: int = 1) -> str:
    return segment_name(tl, n, SEG)


def test_refresh_keeps_first_seen_and_never_downgrades_a_loss(cat: Catalog) -> None:
    cid = cat.cluster("c1").id
    repo = GapRepo(cat)
    (g,) = repo.refresh(cid, [Run(1, 5, 6, PENDING, T0)], SEG, T0)
    assert (g.first_segment, g.last_segment, g.segments, g.state) == (seg(5), seg(6), 2, PENDING)
    (g2,) = repo.refresh(cid, [Run(1, 5, 6, LOST, T0)], SEG, T0 + timedelta(minutes=20))
    assert g2.id == g.id and g2.state == LOST and g2.first_seen == T0 and g2.lost_at
    (g3,) = repo.refresh(cid, [Run(1, 5, 6, PENDING, T0)], SEG, T0 + timedelta(hours=1))
    assert g3.state == LOST  # a confirmed loss stays lost while the segments are absent
    # a run that could not check everything keeps what it did not see open
    assert [x.id for x in repo.refresh(cid, [], SEG, T0, resolve=False)] == [g.id]
    assert repo.refresh(cid, [], SEG, T0 + timedelta(hours=2)) == []
    (done,) = repo.gaps(cid, states=(RESOLVED,))
    assert done.id == g.id and done.resolved_at == T0 + timedelta(hours=2)


def test_a_shrinking_gap_keeps_its_acknowledgement(cat: Catalog) -> None:
    cid = cat.cluster("c1").id
    repo = GapRepo(cat)
    (g,) = repo.refresh(cid, [Run(1, 5, 9, LOST, T0), Run(2, 5, 5, LOST, T0)], SEG, T0)[:1]
    repo.ack(cid, g.id, "ops", "known disk loss")
    shrunk = repo.refresh(cid, [Run(1, 6, 7, LOST, T0), Run(2, 5, 5, LOST, T0)], SEG, T0)
    tl1 = [x for x in shrunk if x.timeline == 1]
    assert [(x.first_segment, x.last_segment, x.ack_reason) for x in tl1] == [
        (seg(6), seg(7), "known disk loss")
    ]
    assert tl1[0].first_seen == T0 and tl1[0].id != g.id
    assert [x.timeline for x in unacknowledged_gaps(cat, cid)] == [2]
    assert unacknowledged_gaps(cat, cid, timeline=1) == []
    assert unacknowledged_gaps(cat, cid, timeline=2, from_segment=seg(6, 2)) == []
    assert len(unacknowledged_gaps(cat, cid, timeline=2, from_segment=seg(5, 2))) == 1
    at5 = f"0/{5 * SEG + 100:X}"
    assert len(unacknowledged_gaps(cat, cid, timeline=2, from_lsn=at5, segment_size=SEG)) == 1
    at6 = f"0/{6 * SEG:X}"
    assert unacknowledged_gaps(cat, cid, timeline=2, from_lsn=at6, segment_size=SEG) == []


def test_pending_gaps_do_not_trip_the_guard_and_ack_checks(cat: Catalog) -> None:
    cid = cat.cluster("c1").id
    repo = GapRepo(cat)
    (g,) = repo.refresh(cid, [Run(1, 3, 3, PENDING, T0)], SEG, T0)
    assert unacknowledged_gaps(cat, cid) == []
    with pytest.raises(NotFound):
        repo.ack(cid, g.id + 100, "ops", "x")
    repo.refresh(cid, [], SEG, T0)
    with pytest.raises(Conflict, match="resolved"):
        repo.ack(cid, g.id, "ops", "x")
