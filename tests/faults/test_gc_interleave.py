"""backup delete (and its GC) against backup create and restore, interleaved at exact
steps (real PostgreSQL, one and two file targets). Whichever comes second is refused
with one line naming the holder and changes nothing; never do both go on. Afterwards
every ok backup is whole on each target, and restores from each target alone."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.backupkit import (
    Faulty,
    Store,
    backup,
    change_rows,
    lease_held,
    setup,
    statuses,
    verify,
)
from tests.fixtures.harbor import Harbor, count_rows
from tests.fixtures.postgres import BINDIR, PgCluster, PgFactory, run_as_server_user, server_dir

pytestmark = pytest.mark.integration

# (pause point, where the delete is then): one target and two targets between them
# cover every step; the four the review names run with both
ONE_TARGET = [
    "lease.after_write",  # its gc lease written, the others not yet looked at
    "delete.after_lease",
    "delete.after_remove",  # before listing what is live
    "gc.after_listing",  # after listing
    "gc.after_rewrite",  # during GC: a pack rewritten, the old one not yet deleted
]
TWO_TARGETS = [
    "delete.after_remove",
    "gc.after_listing",
    "gc.after_rewrite",
    "delete.between_targets",
]
BACKUP_STEPS = [
    "lease.after_write",
    "backup.after_index_load",  # the review's window: the index loaded, chunks counted on
    "backup.mid_stream",
    "backup.before_manifest",
    "backup.after_ref",
]


@contextlib.contextmanager
def hidden(roots: list[Path]) -> Iterator[None]:
    """The targets at roots are unreadable meanwhile (as if their disks were gone)."""
    for root in roots:
        root.chmod(0)
    try:
        yield
    finally:
        for root in roots:
            root.chmod(0o755)


def _restore_from_each_alone(
    harbor: Harbor, pg_factory: PgFactory, workdir: Path, roots: list[Path], backup_id: str
) -> None:
    dest = workdir
    for i, root in enumerate(roots):
        dest = server_dir(workdir / f"alone{i}") / "data"
        with hidden([r for r in roots if r != root]):
            harbor.run("restore", "c1", "--pgdata", str(dest), "--backup", backup_id)
        run_as_server_user([BINDIR / "pg_verifybackup", "-n", dest])
    restored = pg_factory.from_datadir(dest, "alone", archive_mode=False)
    restored.start()
    restored.wait_for_recovery_end(timeout=120)
    assert count_rows(restored, "t") == 20000
    restored.stop()


@pytest.mark.parametrize(
    "targets, steps", [(("t1",), ONE_TARGET), (("t1", "t2"), TWO_TARGETS)], ids=["one", "two"]
)
def test_a_backup_during_each_step_of_a_delete(
    harbor: Harbor,
    pg_factory: PgFactory,
    workdir: Path,
    targets: tuple[str, ...],
    steps: list[str],
) -> None:
    pg = pg_factory()
    roots = setup(harbor, pg, *targets)
    older = backup(harbor)
    for n, step in enumerate(steps):
        change_rows(pg, n)
        newer = backup(harbor)
        deleting = Faulty(harbor, f"{step}=pause", "backup", "delete", "c1", older)
        deleting.paused()
        line = harbor.fails("backup", "create", "c1", code=7)
        assert "cannot take a backup lease" in line, (step, line)
        assert f"gc lease of backup delete c1/{older}" in line, (step, line)
        done = deleting.finish()
        assert done.rc == 0 and "deleted" in done.stdout, (step, done)
        verify(harbor, newer)
        older = newer
    assert statuses(harbor) == {older: "ok"}  # no refused backup left a row
    for root in roots:
        Store(root).consistent()
    if len(roots) > 1:
        _restore_from_each_alone(harbor, pg_factory, workdir, roots, older)


def test_a_delete_during_each_step_of_a_backup(harbor: Harbor, pg_cluster: PgCluster) -> None:
    roots = setup(harbor, pg_cluster, "t1", "t2")
    older = backup(harbor)
    for n, step in enumerate(BACKUP_STEPS):
        change_rows(pg_cluster, n)
        creating = Faulty(harbor, f"{step}=pause", "backup", "create", "c1")
        creating.paused()
        packs = [Store(r).packs for r in roots]
        line = harbor.fails("backup", "delete", "c1", older, code=7)
        assert "cannot take a gc lease" in line and "backup lease of backup c1/" in line, line
        assert [Store(r).packs for r in roots] == packs  # nothing was freed
        done = creating.finish()
        found = re.search(r"^backup (\S+) of c1: ok,", done.stdout, re.M)
        assert done.rc == 0 and found, (step, done)
        newer = found[1]
        assert statuses(harbor) == {older: "ok", newer: "ok"}  # the refused delete: no change
        harbor.run("backup", "delete", "c1", older)
        verify(harbor, newer)
        older = newer
    for root in roots:
        Store(root).consistent()


def test_a_delete_while_a_restore_reads_the_store(harbor: Harbor, pg_cluster: PgCluster) -> None:
    (t1,) = setup(harbor, pg_cluster, "t1")
    b1 = backup(harbor)
    change_rows(pg_cluster, 0)
    b2 = backup(harbor)
    packs = Store(t1).packs
    with lease_held(t1, "restore", f"restore c1/{b2}"):  # as a running restore holds it
        line = harbor.fails("backup", "delete", "c1", b1, code=7)
        assert f"restore lease of restore c1/{b2}" in line, line
        assert statuses(harbor) == {b1: "ok", b2: "ok"} and Store(t1).packs == packs
    harbor.run("backup", "delete", "c1", b1)
    verify(harbor, b2)


def test_a_backup_that_lost_what_it_relies_on_is_never_ok(
    harbor: Harbor, pg_cluster: PgCluster
) -> None:
    """What catches a GC or a backup frozen past its lease: a pack the backup counts on
    gone before its manifest, or its lease gone after its refs (a GC took it for dead):
    the backup fails, and leaves no manifest or ref behind."""
    (t1,) = setup(harbor, pg_cluster, "t1")
    first = backup(harbor)
    packs = Store(t1).packs
    for step, lose in [("backup.after_flush", "pack"), ("backup.after_ref", "lease")]:
        change_rows(pg_cluster, 0)
        creating = Faulty(harbor, f"{step}=pause", "backup", "create", "c1")
        creating.paused()
        store = Store(t1)
        if lose == "pack":  # as a GC that ran although it should not have
            (pack,) = store.packs - packs  # the one it wrote: it relies on it too
            (t1 / "chunks" / "packs" / pack[:2] / pack).unlink()
            (t1 / "chunks" / "index" / pack).unlink()
        else:
            for name in store.leases:
                (t1 / "chunks" / "leases" / name).unlink()
        done = creating.finish()
        assert done.rc != 0 and "ok" not in done.stdout, (step, done)
        line = done.error_line()
        assert ("relies on are gone" if lose == "pack" else "vanished") in line, line
        ((dead, status),) = [b for b in statuses(harbor).items() if b[0] != first]
        assert status == "failed", step
        assert not [r for r in Store(t1).refs if r.startswith(dead)]
        assert not (t1 / "c1" / "backups" / dead / "manifest").exists()
        harbor.run("backup", "delete", "c1", dead)
    verify(harbor, first)
