"""kill -9 at every step of backup create and backup delete (real PostgreSQL, two file
targets): afterwards the killed backup is failed after the next command, nothing blocks
the next delete or backup, what the killed process left (orphan packs, partial chunk
maps, markers, leases) is collected, and every ok backup is whole on each target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.backupkit import Store, backup, change_rows, killed, setup, statuses, verify
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster

pytestmark = pytest.mark.integration

CREATE_STEPS = [
    "lease.after_write",  # its lease object written, the others not yet looked at
    "backup.after_lease",
    "backup.after_index_load",
    "backup.mid_stream",
    "chunks.pack_written",  # a pack without its index
    "backup.after_flush",
    "backup.before_manifest",
    "backup.after_manifest",  # a manifest without a ref
    "backup.after_ref",  # complete on the targets, not in the catalog
]
DELETE_STEPS = [
    "lease.after_write",
    "delete.after_lease",
    "delete.after_remove",  # ref, manifest and chunk map gone on the first target
    "gc.after_listing",
    "chunks.pack_written",  # a rewritten pack without its index
    "gc.after_rewrite",  # the same chunks in two packs
    "delete.between_targets",
]


def _collected(roots: list[Path], step: str) -> None:
    for root in roots:
        store = Store(root)
        store.consistent()
        assert store.leases == set(), step


def test_kill_backup_create_at_every_step(harbor: Harbor, pg_cluster: PgCluster) -> None:
    roots = setup(harbor, pg_cluster, "t1", "t2")
    first = backup(harbor)
    known = {first: "ok"}
    for n, step in enumerate(CREATE_STEPS):
        change_rows(pg_cluster, n)
        killed(harbor, step, "backup", "create", "c1")
        # the next command meets the killed backup
        new = [b for b in harbor.json("backup", "list", "c1") if b["id"] not in known]
        if step == "lease.after_write":
            assert new == [], step  # killed before anything was recorded
            known[backup(harbor)] = "ok"  # its dead lease blocks nothing
            continue
        (dead,) = new
        assert dead["status"] == "failed" and "is gone" in dead["error"], (step, dead)
        if step == "chunks.pack_written":  # on whichever target the first rewrite was
            assert any(Store(r).packs - Store(r).indexes for r in roots)  # an orphan pack
        assert "deleted" in harbor.run("backup", "delete", "c1", dead["id"]).stdout
        _collected(roots, step)
    assert statuses(harbor) == known
    verify(harbor)  # a GC ran after every kill: nothing an ok backup uses went with it


def test_kill_backup_delete_at_every_step(harbor: Harbor, pg_cluster: PgCluster) -> None:
    roots = setup(harbor, pg_cluster, "t1", "t2")
    older = backup(harbor)
    for n, step in enumerate(DELETE_STEPS):
        change_rows(pg_cluster, n)
        newer = backup(harbor)
        killed(harbor, step, "backup", "delete", "c1", older)
        before_change = step in ("lease.after_write", "delete.after_lease")
        assert statuses(harbor) == {older: "ok" if before_change else "deleting", newer: "ok"}
        if step == "chunks.pack_written":  # on whichever target the first rewrite was
            assert any(Store(r).packs - Store(r).indexes for r in roots)  # an orphan pack
        assert "deleted" in harbor.run("backup", "delete", "c1", older).stdout  # not blocked
        _collected(roots, step)
        verify(harbor, newer)  # after a killed GC and the one that finished it
        older = newer
    assert statuses(harbor) == {older: "ok"}
