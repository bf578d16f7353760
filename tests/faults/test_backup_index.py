"""D15: one corrupt chunk index on a target shared by several clusters blocks nothing.
A restore skips it (the placement stays usable for every other chunk) and reads its
chunks from another placement; the next backup moves it to the quarantine with one
warning and stores its chunks again; a GC never deletes the quarantined pack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.backupkit import Store, backup, change_rows, setup, verify
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import BINDIR, PgFactory, run_as_server_user, server_dir

pytestmark = pytest.mark.integration


def test_a_corrupt_index_is_quarantined_and_blocks_no_cluster(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path
) -> None:
    pg = pg_factory()
    t1, t2 = setup(harbor, pg, "t1", "t2")
    b1 = backup(harbor)
    first = [Store(t1).packs, Store(t2).packs]
    change_rows(pg, 0)
    b2 = backup(harbor)
    (bad,) = Store(t1).packs - first[0]  # b2's new chunks on t1
    (t1 / "chunks" / "index" / bad).write_bytes(b"")  # as a full disk leaves it
    for pack in first[1]:  # t2 loses b1's packs: those chunks are on t1 only now
        (t2 / "chunks" / "packs" / pack[:2] / pack).unlink()
        (t2 / "chunks" / "index" / pack).unlink()

    dest = server_dir(workdir / "r") / "data"
    proc = harbor.run("restore", "c1", "--pgdata", str(dest), "--backup", b2)
    assert f"chunk index {bad} is corrupt" in proc.stderr  # skipped, t1 still used
    assert bad in Store(t1).indexes  # a restore changes nothing on a target
    run_as_server_user([BINDIR / "pg_verifybackup", "-n", dest])

    other = pg_factory()  # another cluster on the same target
    harbor.run("cluster", "add", "c2", "--dsn", other.dsn)
    harbor.run("placement", "add", "c2", "t1", "--priority", "1")
    harbor.archive_to(other, "c2")
    proc = harbor.run("backup", "create", "c2")
    warnings = [x for x in proc.stderr.splitlines() if "warning" in x]
    assert len(warnings) == 1 and f"chunks/quarantine/{bad}" in warnings[0], proc.stderr
    assert (t1 / "chunks" / "quarantine" / bad).exists() and bad not in Store(t1).indexes

    b3 = backup(harbor)  # stores the chunks the quarantined index held again
    verify(harbor, b3)
    harbor.run("backup", "delete", "c1", b1)
    harbor.run("backup", "delete", "c1", b2)
    assert bad in Store(t1).packs  # the GC left the quarantined pack alone
    verify(harbor, b3)
