"""Retention end to end on real PostgreSQL 15 and two file targets: five backups with load
in between, two promoted restores that archive new timelines into the same cluster, then
``expire`` with ``--keep-last 2`` and a held backup. What is deleted (backups, WAL on
every target and in the catalog) is exactly what the rules say; restores afterwards
count exactly the rows; a run killed after marking its backups is finished by the next,
and a restore never picks a backup being expired."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgharbor.domain.wal import WalKind, parse_lsn, parse_name
from pgharbor.storage.layout import wal_key
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, server_dir

pytestmark = pytest.mark.integration
SEG = 16 * 1024 * 1024


def _insert(pg: PgCluster, lo: int, hi: int) -> None:
    pg.execute("INSERT INTO tab_int SELECT generate_series(%s::int, %s::int)", (lo, hi))


def _rows(pg: PgCluster) -> int:
    return int(pg.sql_one("SELECT count(*) FROM tab_int"))


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.harbor = Harbor(base)
        self.clusters: list[PgCluster] = []
        self.roots: dict[str, Path] = {}
        self.primary: PgCluster | None = None

    def restore(self, name: str, *args: str, archive: bool = False) -> PgCluster:
        pgdata = self.base / name / "data"
        server_dir(pgdata.parent)
        self.harbor.run("restore", "c1", "--pgdata", str(pgdata), *args)
        pg = PgCluster.from_datadir(pgdata, self.base / name)
        conf: dict[str, object] = {"archive_mode": archive}
        if archive:
            conf["archive_command"] = f"{self.harbor.command()} wal push c1 %p"
        pg.configure(conf)  # type: ignore[arg-type]
        self.clusters.append(pg)
        pg.start()
        pg.wait_for_recovery_end(timeout=120)
        return pg

    def backups(self) -> dict[str, dict[str, Any]]:
        return {b["id"]: b for b in self.harbor.json("backup", "list", "c1")}

    def wal(self) -> dict[str, set[str]]:
        """name -> targets with an ok copy (catalog)."""
        return {
            f["name"]: {c["target"] for c in f["copies"] if c["status"] == "ok"}
            for f in self.harbor.json("wal", "list", "c1")
        }

    def on_disk(self, target: str, name: str) -> bool:
        return (self.roots[target] / wal_key("c1", parse_name(name))).exists()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-retention-", dir="/tmp"))
    w = World(base)
    w.harbor.run("init")
    w.roots = {t: w.harbor.target(t) for t in ("t1", "t2")}
    primary = PgCluster(base / "primary", name="primary").initdb()
    primary.start()
    w.clusters.append(primary)
    try:
        w.harbor.register(primary, "c1", "t1", "t2")
        w.harbor.archive_to(primary)
        primary.execute("CREATE TABLE tab_int (a int)")
        w.primary = primary
        yield w
    finally:
        for pg in w.clusters:
            with contextlib.suppress(Exception):
                pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _needed(wal: dict[str, set[str]], start_lsn: str, timelines: set[int]) -> set[str]:
    """What the rules keep for one backup on timeline 1 whose descendants are
    ``timelines``: every file from its start segment on, on each of them."""
    first = parse_lsn(start_lsn) // SEG
    out = set()
    for name in wal:
        w = parse_name(name)
        if w.kind is WalKind.HISTORY or (w.timeline in timelines and w.segno(SEG) >= first):
            out.add(name)
    return out


def test_expire_keep_last_two_with_a_hold_and_new_timelines(world: World) -> None:
    h, primary = world.harbor, world.primary
    assert primary is not None
    ids: list[str] = []
    for i in range(5):
        _insert(primary, i * 1000 + 1, (i + 1) * 1000)
        if i == 4:  # between the 4th and the 5th backup: a time inside the kept window
            time.sleep(0.2)
            mark = str(primary.sql_one("SELECT clock_timestamp()"))
            time.sleep(0.2)
            _insert(primary, 5001, 5500)
        h.run("backup", "create", "c1")
        ids.append(h.json("backup", "list", "c1")[-1]["id"])
    b1, b2, b3, b4, b5 = ids
    _insert(primary, 5501, 6000)
    primary.wait_for_archived(primary.switch_wal(), timeout=120)

    # timeline 2: promoted from b4's window (branches after b2 and b4 started)
    tl2 = world.restore("r_tl2", "--target-time", mark, "--target-timeline", "1", archive=True)
    assert _rows(tl2) == 5000
    _insert(tl2, 900001, 900100)
    tl2.wait_for_archived(tl2.switch_wal(), timeout=120)
    tl2.stop()
    # timeline 3: promoted straight from b1 (branches before b2 started)
    tl3 = world.restore(
        "r_tl3", "--backup", b1, "--target-immediate", "--target-timeline", "1", archive=True
    )
    assert _rows(tl3) == 1000
    _insert(tl3, 800001, 800100)
    tl3.wait_for_archived(tl3.switch_wal(), timeout=120)
    tl3.stop()
    before = world.wal()
    assert {"00000002.history", "00000003.history"} <= set(before)
    assert {parse_name(n).timeline for n in before} == {1, 2, 3}

    h.run("retention", "set", "c1", "--keep-last", "2")
    plan = h.json("expire", "c1", "--dry-run")["runs"][0]
    actions = {v["id"]: v["rules"] for v in plan["backups"]}
    assert actions == {
        b1: [],
        b2: [],
        b3: [],
        b4: ["keep-last"],
        b5: ["min-backups", "keep-last"],
    }
    assert plan["guards"] and "more than half" in plan["guards"][0]
    line = h.fails("expire", "c1", code=20)  # 3 of 5: the guard refuses, nothing changes
    assert "more than half" in line
    assert set(world.backups()) == set(ids)
    assert world.wal() == before

    h.run("backup", "hold", "c1", b2, "--reason", "audit 2026")
    text = h.run("expire", "c1", "--dry-run").stdout
    lines = {i: next(x for x in text.splitlines() if i in x) for i in ids}
    assert lines[b1].endswith("delete (no rule)") and lines[b3].endswith("delete (no rule)")
    assert lines[b2].endswith("keep (hold)")
    assert lines[b5].endswith("keep (min-backups, keep-last)")

    start2 = world.backups()[b2]["start_lsn"]
    expected = _needed(before, start2, {1, 2, 3})
    assert expected < set(before)  # timeline 1 before b2 and the start of 3 are deleted
    dropped = set(before) - expected
    assert {parse_name(n).timeline for n in dropped} == {1, 3}
    assert not any(parse_name(n).timeline == 2 for n in dropped)
    dry = h.json("expire", "c1", "--dry-run")["runs"][0]
    assert set(dry["wal_delete"]) == dropped  # the dry run is the real run

    out = h.run("expire", "c1").stdout
    assert "deleted 2 backup(s)" in out
    for target in ("t1", "t2"):  # the chunks only b1 and b3 used were freed on each target
        freed = re.search(rf"{target}: (\d+) chunks freed", out)
        assert freed and int(freed.group(1)) > 0, out
    assert set(world.backups()) == {b2, b4, b5}
    after = world.wal()
    assert set(after) == expected
    for name in before:
        for target in ("t1", "t2"):
            if target in before[name]:
                assert world.on_disk(target, name) == (name in expected), (target, name)

    # restores afterwards: inside the kept window, and from the held backup
    assert _rows(world.restore("r_mark", "--target-time", mark, "--target-timeline", "1")) == 5000
    assert (
        _rows(
            world.restore("r_held", "--backup", b2, "--target-immediate", "--target-timeline", "1")
        )
        == 2000
    )
    # the same run again: nothing left to delete
    again = h.json("expire", "c1")["runs"][0]
    assert again["deleted"] == [] and again["wal_delete"] == []

    # a run killed right after marking: b2 (released) stays expiring and is never picked
    h.run("backup", "release", "c1", b2)
    h.env["PGHARBOR_FAULT"] = "expire.after_mark=kill"
    try:
        killed = h.run("expire", "c1", check=False)
    finally:
        del h.env["PGHARBOR_FAULT"]
    assert killed.returncode != 0
    assert world.backups()[b2]["status"] == "expiring"
    target = world.base / "r_never" / "data"
    assert "expiring" in h.fails("restore", "c1", "--pgdata", str(target), "--backup", b2)
    h.run("expire", "c1")  # finishes it
    assert set(world.backups()) == {b4, b5}
    final = world.wal()
    assert set(final) == _needed(before, world.backups()[b4]["start_lsn"], {1, 2, 3})
    assert "00000002.history" in final and "00000003.history" in final
    assert not [n for n in final if parse_name(n).timeline == 3 and not n.endswith(".history")]
