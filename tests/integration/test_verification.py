"""WAL verification and repair end to end on real PostgreSQL 15 and two file targets,
through the real CLI: a segment removed from one placement is copied back by the next
``verify`` (same bytes as PostgreSQL's own); a segment the catalog forgot but the
targets hold is recorded, not reported lost; a segment removed from every placement
becomes a lost gap that ``wal gaps`` and ``status`` show, ends the recoverable window,
makes the backup whose own WAL needs it unusable, and can be acknowledged; once the
segment is back, the gap is resolved and the backup usable again."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgharbor.domain.wal import parse_name, segment_name
from pgharbor.storage.layout import wal_key
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, server_dir

pytestmark = pytest.mark.integration
SEG = 16 * 1024 * 1024


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.harbor = Harbor(base)
        self.harbor.env.update(PGHARBOR_VERIFY_GRACE="0", PGHARBOR_VERIFY_CONTENT_PERIOD="0")
        self.roots: dict[str, Path] = {}
        self.own = base / "own-copies"  # PostgreSQL's bytes of every archived file
        self.pg: PgCluster | None = None

    def path(self, target: str, name: str) -> Path:
        return self.roots[target] / wal_key("c1", parse_name(name))

    def backups(self) -> dict[str, dict[str, Any]]:
        return {b["id"]: b for b in self.harbor.json("backup", "list", "c1")}

    def verify(self, ok: bool = True) -> dict[str, Any]:
        proc = self.harbor.run("verify", "c1", "--json", check=False)
        assert (proc.returncode == 0) == ok, (proc.returncode, proc.stdout, proc.stderr)
        import json

        result: dict[str, Any] = json.loads(proc.stdout)[0]
        return result

    def check_gaps(self, code: int, status: str, **perf: int) -> str:
        """``pgharbor check wal-gaps c1``: its exit code, status and perfdata values."""
        proc = self.harbor.run("check", "wal-gaps", "c1", check=False)
        first = proc.stdout.splitlines()[0]
        assert proc.returncode == code and first.startswith(f"PGHARBOR_WAL_GAPS {status} - "), (
            proc.returncode,
            proc.stdout,
            proc.stderr,
        )
        for name, value in perf.items():
            assert f" {name}={value};" in first, first
        return first


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-verify-", dir="/tmp"))
    w = World(base)
    pg = PgCluster(base / "primary", name="primary").initdb()
    try:
        w.harbor.run("init")
        w.roots = {t: w.harbor.target(t) for t in ("t1", "t2")}
        pg.start()
        w.harbor.register(pg, "c1", "t1", "t2", required=2)
        w.harbor.archive_to(pg, keep_copy=w.own)
        pg.execute("CREATE TABLE tab_int (a int)")
        w.pg = pg
        yield w
    finally:
        with contextlib.suppress(Exception):
            pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _load(pg: PgCluster, n: int) -> str:
    pg.execute("INSERT INTO tab_int SELECT generate_series(1, %s)", (n,))
    name = pg.switch_wal()
    pg.wait_for_archived(name, timeout=120)
    return name


def test_verify_repairs_lag_records_what_the_catalog_lacks_and_records_lost_gaps(
    world: World,
) -> None:
    h, pg = world.harbor, world.pg
    assert pg is not None
    ids = []
    between: list[str] = []
    for i in range(3):
        h.run("backup", "create", "c1")
        ids.append(list(world.backups())[-1])
        between.append(_load(pg, 1000))
        if i < 2:
            between.append(_load(pg, 1000))
    b1, b2, b3 = ids
    first = world.verify()
    assert first["gaps"] == [] and first["repaired"] == [] and first["ok"]
    world.check_gaps(0, "OK", pending_segments=0, lost_segments=0)
    assert first["content_checked"] == len(h.wal_files())
    assert sorted(first["backups_checked"]) == sorted(ids) and first["backups_bad"] == []
    start1 = world.backups()[b1]["wal_start"]
    assert first["expected"]["1"][0] == start1  # from the oldest backup's start segment

    # 1. placement lag: a segment between b1 and b2 removed from t1 only
    lag = between[0]
    assert lag > world.backups()[b1]["wal_stop"]
    world.path("t1", lag).unlink()
    fixed = world.verify()
    assert f"{lag} -> t1" in fixed["repaired"]
    assert any(line.startswith(f"t1: {lag}: missing") for line in fixed["content_bad"])
    assert world.path("t1", lag).exists()
    assert fixed["gaps"] == []
    out = world.base / "fetched"
    server_dir(out)
    h.run("wal", "fetch", "c1", lag, str(out / lag))  # t1 comes first: its copy
    want = hashlib.sha256((world.own / lag).read_bytes()).hexdigest()
    assert hashlib.sha256((out / lag).read_bytes()).hexdigest() == want
    assert {c["target"] for c in h.wal_files()[lag]["copies"] if c["status"] == "ok"} == {
        "t1",
        "t2",
    }

    # 2. the catalog lost its rows of a segment that both targets hold: not a gap, the
    #    stat before calling it lost finds it, and wal sync records it again
    forgot = between[1]
    db = sqlite3.connect(world.base / "catalog.db")
    with db:
        db.execute("DELETE FROM wal_copies WHERE name = ?", (forgot,))
    db.close()
    assert forgot not in h.wal_files()
    healed = world.verify()
    assert healed["gaps"] == [] and healed["recorded"] == 2
    assert forgot in h.wal_files()

    # 3. a segment of b2's own WAL removed from every placement: a lost gap
    before = h.json("status", "c1")[0]
    assert [w["start_lsn"] for w in before["windows"]] == [world.backups()[b1]["start_lsn"]]
    gone = world.backups()[b2]["wal_start"]
    for t in ("t1", "t2"):
        world.path(t, gone).unlink()
    h.env["PGHARBOR_VERIFY_GRACE"] = "3600"  # the segment after it is younger: in flight?
    try:
        pending = world.verify()
    finally:
        h.env["PGHARBOR_VERIFY_GRACE"] = "0"
    assert [(g["first_segment"], g["state"]) for g in pending["gaps"]] == [(gone, "pending")]
    assert pending["unusable"] == [] and world.backups()[b2]["status"] == "ok"
    world.check_gaps(1, "WARNING", pending_segments=1, lost_segments=0)
    lost = world.verify(ok=False)
    assert [(g["first_segment"], g["last_segment"], g["state"]) for g in lost["gaps"]] == [
        (gone, gone, "lost")
    ]
    assert lost["gaps"][0]["id"] == pending["gaps"][0]["id"]  # the same gap, now lost
    assert lost["gaps"][0]["first_seen"] == pending["gaps"][0]["first_seen"]
    assert lost["unusable"] == [b2]
    assert gone in world.check_gaps(2, "CRITICAL", pending_segments=0, lost_segments=1)
    gaps = h.json("wal", "gaps", "c1")
    assert [(g["first_segment"], g["state"], g["acked_at"]) for g in gaps["gaps"]] == [
        (gone, "lost", None)
    ]
    assert not gaps["ok"]
    text = h.run("wal", "gaps", "c1").stdout
    assert gone in text and "1 lost, 1 unacknowledged" in text

    backups = world.backups()
    assert backups[b2]["status"] == "unusable" and gone in backups[b2]["error"]
    assert backups[b1]["status"] == "ok" and backups[b3]["status"] == "ok"
    st = h.json("status", "c1")[0]
    assert [g["first_segment"] for g in st["gaps"]] == [gone]
    assert st["backups"]["usable"] == 2 and st["backups"]["unusable"] == 1
    segno = parse_name(gone).segno(SEG)
    ends = [(w["start_lsn"], w["end_segment"]) for w in st["windows"]]
    assert ends == [
        (backups[b1]["start_lsn"], segment_name(1, segno - 1, SEG)),  # ends before the gap
        (backups[b3]["start_lsn"], before["windows"][0]["end_segment"]),
    ]
    shown = h.run("status", "c1").stdout
    assert f"WAL gap {gaps['gaps'][0]['id']} on timeline 1: {gone}..{gone}" in shown
    assert "the window ends before it" in shown
    # a restore never uses the unusable backup
    line = h.fails("restore", "c1", "--pgdata", str(world.base / "never"), "--backup", b2)
    assert "unusable" in line

    # 4. acknowledged: still lost, still recorded, no longer unacknowledged
    gap_id = str(gaps["gaps"][0]["id"])
    h.run("wal", "gaps", "ack", "c1", gap_id, "--reason", "disk loss 2026-12, accepted")
    again = world.verify(ok=False)
    assert [(g["state"], g["ack_reason"]) for g in again["gaps"]] == [
        ("lost", "disk loss 2026-12, accepted")
    ]
    listed = h.json("wal", "gaps", "c1")
    assert listed["ok"] and listed["gaps"][0]["acked_by"]
    world.check_gaps(0, "OK", lost_segments=0, acked_segments=1)
    assert "no WAL gap 999" in h.fails("wal", "gaps", "ack", "c1", "999", "--reason", "x")

    # 5. the segment comes back (pushed again from PostgreSQL's own copy): the gap is
    #    resolved, the backup usable again, the window whole
    h.run("wal", "push", "c1", str(world.own / gone))
    back = world.verify()
    assert back["gaps"] == [] and back["usable_again"] == [b2]
    assert world.backups()[b2]["status"] == "ok"
    world.check_gaps(0, "OK", pending_segments=0, lost_segments=0, acked_segments=0)
    assert [g["state"] for g in h.json("wal", "gaps", "c1", "--all")["gaps"]] == ["resolved"]
    whole = h.json("status", "c1")[0]
    assert whole["gaps"] == [] and whole["windows"] == before["windows"]
    fleet = h.json("verify", "--all")
    assert [(r["cluster"], r["ok"], r["gaps"]) for r in fleet] == [("c1", True, [])]
