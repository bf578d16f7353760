"""Archiving survives its own local state on a real full file system: the state folder
(placement cache and journal) on a tiny tmpfs, the catalog away, pushes until the journal
write is cut by ENOSPC. Every push that stored its file succeeds (PostgreSQL may recycle
the segment: it is on the targets), the torn record is set aside once there is room
again, and every row that was journaled reaches the catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import segment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

PGHARBOR = str(Path(sys.executable).with_name("pgharbor"))
NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 40)]


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k,mode=0700", "tmpfs", mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


def _push(env: Env, state: Path, name: str, catalog: str) -> subprocess.CompletedProcess[str]:
    path = env.tmp / "pg_wal" / name
    if not path.exists():  # the same file again when PostgreSQL offers it again
        env.wal(name, segment(name, SYSID))
    return subprocess.run(
        [PGHARBOR, "--catalog", catalog, "wal", "push", "c1", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PGHARBOR_STATE_DIR": str(state)},
        check=False,
    )


def test_enospc_in_the_state_folder_never_stops_archiving(tmp_path: Path, tiny: Path) -> None:
    env = Env(tmp_path)
    state = tiny / "state"
    assert _push(env, state, NAMES[0], env.url).returncode == 0  # caches the placements
    db = tmp_path / "catalog.db"
    db.rename(tmp_path / "catalog.away")  # the catalog is down: rows go to the journal
    filler = tiny / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - 4096))  # room for one page of records
    journal = state / "journal" / "c1.jsonl"
    results = []
    for name in NAMES[1:]:
        proc = _push(env, state, name, env.url)
        assert proc.returncode == 0, proc.stderr  # stored on the targets: success
        assert "Traceback" not in proc.stderr
        results.append(proc)
        if "not recorded" in proc.stderr:
            break  # the journal is full: this push's rows are only on the targets
    assert any("not recorded" in p.stderr for p in results), "the file system never filled"
    assert journal.read_bytes()[-1:] != b"\n"  # a record was cut in the middle (torn)
    pushed = NAMES[: len(results) + 1]

    filler.unlink()
    (tmp_path / "catalog.away").rename(db)  # room again, and the catalog is back
    proc = _push(env, state, NAMES[-1], env.url)
    assert proc.returncode == 0 and "set aside" in proc.stderr, proc.stderr
    assert "torn" in (state / "journal" / "c1.bad").read_text()
    recorded = set(env.copies())
    journaled = set(pushed[:-1])  # every push before the one whose write was cut
    assert journaled - recorded <= {pushed[-2]}  # at most the torn record's file...
    for name in pushed:  # ...and every file is on both targets whatever the catalog says
        assert all(name in env.stored(root) for root in env.roots), name
    assert _push(env, state, NAMES[-1], env.url).stderr == ""  # healthy again
    sync = subprocess.run(  # and the rows the cut record held are recorded from the targets
        [PGHARBOR, "--catalog", env.url, "wal", "sync", "c1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PGHARBOR_STATE_DIR": str(state)},
        check=False,
    )
    assert sync.returncode == 0, sync.stderr
    assert set(pushed) <= set(env.copies())
    assert all(status == "ok" for cs in env.copies().values() for _, status in cs)
