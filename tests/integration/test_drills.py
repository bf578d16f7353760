"""Restore drills end to end on real PostgreSQL 15: a backup restored into a scratch
folder, started on loopback as the server user, recovered, checked and recorded. The
scenario is shared (one primary, two file targets); the tests that damage the archive
run last (pytest runs a module's tests in file order)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.backupkit import Faulty, Store, backup
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster, server_dir
from tests.fixtures.serve import ServeNode, wait_for
from tests.fixtures.tamper import flip_byte, wal_objects

pytestmark = pytest.mark.integration


@dataclass
class Scene:
    base: Path
    harbor: Harbor
    primary: PgCluster
    roots: list[Path]
    first: str  # the first backup
    config: Path
    sql: Path

    def drill(self, *args: str) -> tuple[int, dict[str, Any], str]:
        proc = self.harbor.run("drill", "run", "c1", *args, "--json", check=False)
        return proc.returncode, json.loads(proc.stdout), proc.stderr

    def rows(self) -> int:
        return int(self.primary.sql_one("SELECT count(*) FROM orders"))


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-drill-", dir="/tmp"))
    harbor = Harbor(base)
    sql = base / "c1-drill.sql"
    config = base / "pgharbor.toml"
    config.write_text(f'[clusters.c1]\ndrill_sql_file = "{sql}"\n')
    sql.write_text("-- orders exist\nSELECT count(*) > 0 FROM orders;\n")
    harbor.env["PGHARBOR_CONFIG"] = str(config)
    harbor.run("init")
    roots = [harbor.target("t1"), harbor.target("t2")]
    primary = PgCluster(base / "primary", name="primary").initdb()
    primary.start()
    try:
        harbor.register(primary, "c1", "t1", "t2")
        harbor.archive_to(primary)
        primary.execute(
            "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS v "
            "FROM generate_series(1, 20000) g"
        )
        primary.execute("CREATE INDEX ON orders (v)")
        first = backup(harbor)
        primary.execute("INSERT INTO orders SELECT g, 'after' FROM generate_series(1, 500) g")
        primary.wait_for_archived(primary.switch_wal(), timeout=120)
        yield Scene(base, harbor, primary, roots, first, config, sql)
    finally:
        with contextlib.suppress(Exception):
            primary.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _check(h: Harbor, name: str) -> tuple[int, str]:
    proc = h.run("check", name, "c1", check=False)
    return proc.returncode, proc.stdout.splitlines()[0]


def test_healthy_drill_passes_and_records_its_rto(scene: Scene) -> None:
    h = scene.harbor
    assert _check(h, "drill")[0] == 0  # never drilled: not an alert
    rc, r, err = scene.drill()
    assert rc == 0, (r, err)
    assert r["ok"] and r["backup_id"] == scene.first and r["target"] == "the end of the archive"
    checks = {c["name"]: c for c in r["checks"]}
    assert [checks[n]["ok"] for n in ("pg_verifybackup", "connect", "recovery point")] == [
        True,
        True,
        True,
    ], checks
    assert checks["pg_amcheck"]["ok"] is True, checks["pg_amcheck"]
    assert checks["sql"]["ok"] is True and "1 queries" in checks["sql"]["detail"]
    assert r["total_s"] >= r["restore_s"] + r["recovery_s"] > 0
    assert r["wal_segments"] >= 2 and r["bytes_restored"] > 1_000_000
    assert r["scratch"] is None
    drills = server_dir(h.state_dir / "drills")
    assert list(drills.iterdir()) == []  # the scratch folder is gone
    listed = h.json("drill", "list", "c1")
    assert [(d["id"], d["status"]) for d in listed] == [(r["id"], "ok")]
    assert listed[0]["total_s"] == r["total_s"] and listed[0]["reached_lsn"] == r["reached_lsn"]
    marks = {b["id"]: b["drilled_at"] for b in h.json("backup", "list", "c1")}
    assert marks[scene.first] is not None
    assert "last proven recoverable: " in h.run("status", "c1").stdout
    code, line = _check(h, "drill")
    assert code == 0 and "last proven recoverable" in line, line


def test_a_random_point_of_the_window_when_configured(scene: Scene) -> None:
    h, pg = scene.harbor, scene.primary
    for _ in range(2):  # a window of a few segments past the backup's end
        pg.execute("INSERT INTO orders SELECT g, 'later' FROM generate_series(1, 500) g")
        pg.wait_for_archived(pg.switch_wal(), timeout=120)
    kept = scene.config.read_text()
    scene.config.write_text(kept + 'drill_target = "random"\n')
    try:
        rc, r, err = scene.drill()
    finally:
        scene.config.write_text(kept)
    assert rc == 0 and r["ok"], (r, err)
    kind, _, value = r["target"].partition(" ")
    assert kind == "lsn", r["target"]
    (b,) = [b for b in h.json("backup", "list", "c1") if b["id"] == scene.first]
    (window,) = h.json("status", "c1")[0]["windows"]

    def lsn(text: str) -> int:
        hi, lo = text.split("/")
        return (int(hi, 16) << 32) | int(lo, 16)

    assert lsn(b["stop_lsn"]) <= lsn(value) <= lsn(window["end_lsn"]) - 16 * 1024 * 1024
    assert lsn(r["reached_lsn"]) >= lsn(value)
    checks = {c["name"]: c["ok"] for c in r["checks"]}
    assert checks["recovery point"] is True, r["checks"]


def test_user_sql_check_returning_false_fails_and_keeps_the_scratch(scene: Scene) -> None:
    scene.sql.write_text(
        "SELECT count(*) > 0 FROM orders;\nSELECT count(*) > 1000000 FROM orders;\n"
    )
    try:
        rc, r, err = scene.drill("--target-immediate")
    finally:
        scene.sql.write_text("SELECT count(*) > 0 FROM orders;\n")
    assert rc == 22 and not r["ok"], (r, err)
    sql = next(c for c in r["checks"] if c["name"] == "sql")
    assert sql["ok"] is False and "count(*) > 1000000" in sql["detail"]
    assert "returned False" in sql["detail"]
    assert "pgharbor: error: drill" in err and "count(*) > 1000000" in err
    kept = Path(r["scratch"])
    assert (kept / "data" / "PG_VERSION").exists() and (kept / "server.log").exists()
    assert not (kept / "data" / "postmaster.pid").exists()  # stopped all the same
    shutil.rmtree(kept)
    code, line = _check(scene.harbor, "drill")
    assert code == 2 and "the latest drill" in line and "failed" in line, line


def test_too_little_disk_is_refused_before_anything_is_written(scene: Scene) -> None:
    small = scene.base / "small"
    small.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0777", "tmpfs", str(small)], check=True
    )
    try:
        h = scene.harbor
        before = len(h.json("drill", "list", "c1"))
        h.env["PGHARBOR_DRILL_DIR"] = str(small)
        try:
            line = h.fails("drill", "run", "c1")
        finally:
            del h.env["PGHARBOR_DRILL_DIR"]
        assert "drill refused" in line and "MiB free" in line and "needs" in line, line
        assert list(small.iterdir()) == []
        assert len(h.json("drill", "list", "c1")) == before
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_expire_during_a_drill_keeps_what_the_drill_holds(scene: Scene) -> None:
    h = scene.harbor
    second = backup(h)
    scene.primary.execute("INSERT INTO orders SELECT g, 'later' FROM generate_series(1, 300) g")
    scene.primary.wait_for_archived(scene.primary.switch_wal(), timeout=120)
    h.run("retention", "set", "c1", "--keep-last", "1")
    first = next(b for b in h.json("backup", "list", "c1") if b["id"] == scene.first)
    needed = first["wal_start"]  # the first segment the drilled backup needs
    assert needed in h.wal_files()
    drill = Faulty(h, "drill.restored=pause", "drill", "run", "c1", "--backup", scene.first)
    drill.paused(120)
    out = h.json("expire", "c1")
    assert scene.first not in out["runs"][0]["deleted"]
    ids = {b["id"] for b in h.json("backup", "list", "c1")}
    assert {scene.first, second} <= ids
    assert needed in h.wal_files()  # the WAL after the drilled backup is kept too
    done = drill.finish(180)
    assert done.rc == 0, done.stderr
    result = json.loads(h.run("drill", "list", "c1", "--json").stdout)[0]
    assert (result["backup_id"], result["status"]) == (scene.first, "ok")
    # a killed drill pins nothing: its row is seen dead, the next expire deletes
    killed = Faulty(h, "drill.restored=kill", "drill", "run", "c1", "--backup", scene.first)
    assert killed.finish(120).rc != 0
    out = h.json("expire", "c1")
    assert scene.first in out["runs"][0]["deleted"]
    assert h.json("drill", "list", "c1")[0]["status"] == "failed"
    for leftover in (h.state_dir / "drills").iterdir():
        shutil.rmtree(leftover)


def test_scheduled_drill_runs_through_serve(scene: Scene, tmp_path: Path) -> None:
    h = scene.harbor
    logs = server_dir(scene.base / "serve-logs")
    node = ServeNode(h, "a", logs / "a.log", PGHARBOR_CONFIG=str(scene.config))
    try:
        node.wait_healthy()
        job = h.json("schedule", "trigger", "c1", "drill")
        done = wait_for(
            "the drill job",
            lambda: (
                (j := h.json("job", "show", str(job["id"])))["state"] in ("done", "failed") and j
            ),
            180,
        )
        assert done["state"] == "done", done
        result = done["result"] if isinstance(done["result"], dict) else json.loads(done["result"])
        assert result["ok"] and result["backup_id"] == h.json("backup", "list", "c1")[-1]["id"]
        assert h.json("drill", "list", "c1")[0]["id"] == result["id"]

        # the node's /metrics renders the drill (after the metrics cache has expired)
        def drill_metrics() -> str | bool:
            text = node.metrics()
            return 'pgharbor_drill_last_result{cluster="c1"} 1.0' in text and text

        text = wait_for("the drill in /metrics", drill_metrics, 60)
        assert isinstance(text, str)
        assert 'pgharbor_drill_last_success_timestamp_seconds{cluster="c1"}' in text
        for phase in ("restore", "recovery", "total", "check_connect"):
            assert f'pgharbor_drill_last_duration_seconds{{cluster="c1",phase="{phase}"}}' in text
    finally:
        node.stop()


def test_wal_segment_missing_everywhere_fails_a_drill_to_the_end(scene: Scene) -> None:
    h, pg = scene.harbor, scene.primary
    newest = h.json("backup", "list", "c1")[-1]
    for _ in range(3):
        pg.execute("INSERT INTO orders SELECT g, 'gap' FROM generate_series(1, 100) g")
        pg.wait_for_archived(pg.switch_wal(), timeout=120)
    stop = newest["wal_stop"] or newest["stop_lsn"]
    after = [p for p in wal_objects(scene.roots[0]) if p.name > (newest["wal_stop"] or "")]
    assert len(after) >= 3, (stop, [p.name for p in wal_objects(scene.roots[0])])
    victim = after[1].name  # one in the middle: later segments are archived
    for root in scene.roots:
        for p in wal_objects(root):
            if p.name == victim:
                p.unlink()
    rc, r, err = scene.drill()
    assert rc == 22 and not r["ok"], r
    point = next(c for c in r["checks"] if c["name"] == "recovery point")
    assert (
        point["ok"] is False and f"segment {victim} is missing from every target" in point["detail"]
    ), point
    assert victim in err
    shutil.rmtree(r["scratch"])


def test_chunk_corrupted_everywhere_fails_naming_the_file(scene: Scene) -> None:
    h = scene.harbor
    for root in scene.roots:
        for pack in (root / "chunks" / "packs").rglob("*"):
            if pack.is_file():
                flip_byte(pack)
    assert Store(scene.roots[0]).packs
    rc, r, err = scene.drill("--target-immediate")
    assert rc == 22 and not r["ok"], r
    assert r["error"] and "restore failed" in r["error"], r
    assert "base/" in r["error"] or "global/" in r["error"] or "pg_" in r["error"], r["error"]
    assert r["error"] in err  # the one error line names it too
    code, line = _check(h, "drill")
    assert code == 2 and "failed" in line, line
    if r["scratch"]:
        shutil.rmtree(r["scratch"])
