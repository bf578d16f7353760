"""Archiving survives its own local state: a torn or garbage journal record, a row the
catalog refuses, a damaged placement cache are set aside (one warning naming where), and
`wal push` keeps succeeding; nothing it recorded before is lost."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pgharbor.archive.context import LocalState
from pgharbor.archive.push import push
from pgharbor.errors import CatalogError
from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import segment

NAMES = [f"00000001000000000000000{i}" for i in range(1, 6)]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _state(env: Env) -> LocalState:
    return LocalState(env.settings.state_dir, "c1")


def _catalog_down(env: Env) -> Path:
    db = env.tmp / "catalog.db"
    away = env.tmp / "catalog.away"
    db.rename(away)
    return away


def _push(env: Env, name: str) -> str:
    return push(env.settings, "c1", env.wal(name, segment(name, SYSID))).recorded_in


def test_torn_and_garbage_records_are_set_aside(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _push(env, NAMES[0])  # the cache
    away = _catalog_down(env)
    assert _push(env, NAMES[1]) == "journal"
    journal = Path(_state(env).journal)
    with journal.open("ab") as f:  # a garbage line, then a write cut short (ENOSPC)
        f.write(b"\x00\x01garbage\n")
        f.write(b'{"cluster_id": "x", "name": "0000')
    away.rename(env.tmp / "catalog.db")
    capsys.readouterr()
    assert _push(env, NAMES[2]) == "catalog"  # archiving goes on...
    err = capsys.readouterr().err
    quarantine = Path(_state(env).quarantine)
    assert err.count("pgharbor: warning:") == 1 and str(quarantine) in err
    assert {n for n in env.copies()} == set(NAMES[:3])  # ...and the good row was replayed
    bad = quarantine.read_bytes()
    assert b"garbage" in bad and b'"name": "0000' in bad and b"torn" in bad
    assert journal.read_bytes() == b""
    assert _push(env, NAMES[3]) == "catalog"  # and it stays healthy
    assert capsys.readouterr().err == ""


def test_a_row_the_catalog_refuses_does_not_hold_back_the_others(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _push(env, NAMES[0])
    away = _catalog_down(env)
    _push(env, NAMES[1])
    state = _state(env)
    row = {
        "cluster_id": "no-such-cluster",  # a foreign key the catalog refuses
        "target_id": "no-such-target",
        "name": NAMES[4],
        "timeline": 1,
        "size": 1,
        "stored_size": 1,
        "checksum": "sha256:00",
        "archived_at": "2026-12-01T00:00:00+00:00",
        "status": "ok",
        "detail": None,
    }
    state.append_journal([row])
    away.rename(env.tmp / "catalog.db")
    assert _push(env, NAMES[2]) == "catalog"
    assert set(env.copies()) == set(NAMES[:3])
    assert "no-such-target" in Path(state.quarantine).read_text()
    assert "set aside" in capsys.readouterr().err


def test_records_from_before_framing_are_still_replayed(env: Env) -> None:
    _push(env, NAMES[0])
    away = _catalog_down(env)
    _push(env, NAMES[1])
    journal = Path(_state(env).journal)
    framed = journal.read_bytes()
    plain = b"\n".join(line.rpartition(b"\t")[0] for line in framed.splitlines()) + b"\n"
    journal.write_bytes(plain)  # what an earlier pgharbor wrote
    away.rename(env.tmp / "catalog.db")
    _push(env, NAMES[2])
    assert set(env.copies()) == set(NAMES[:3])
    assert not Path(_state(env).quarantine).exists()


def test_a_damaged_placement_cache_is_set_aside(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _push(env, NAMES[0])
    cache = Path(_state(env).cache)
    cache.write_text('{"id": "x", "placements": [')
    _catalog_down(env)
    with pytest.raises(CatalogError, match="no cached placements"):
        _push(env, NAMES[1])
    assert "unreadable" in capsys.readouterr().err
    assert (cache.parent / f"{cache.name}.bad").exists() and not cache.exists()


def test_state_files_are_private(env: Env) -> None:
    _push(env, NAMES[0])
    away = _catalog_down(env)
    _push(env, NAMES[1])
    state = _state(env)
    away.rename(env.tmp / "catalog.db")
    Path(state.journal).write_bytes(Path(state.journal).read_bytes() + b"junk\n")
    _push(env, NAMES[2])
    for path in (state.cache, state.journal, state.quarantine):
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600, path
    for folder in (Path(state.cache).parent, Path(state.journal).parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert json.loads(Path(state.cache).read_text())["name"] == "c1"
