"""A copy counts only where it really is: the target's claim is checked first, a re-push
reads the stored copy whole before calling it present (and heals a corrupt one only when
the catalog confirms the content), a bad option on one target fails only that copy, and
wal verify finds every bad copy and gap before a restore needs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pgharbor.archive.fetch import fetch
from pgharbor.archive.push import push
from pgharbor.archive.verify import repair, verify
from pgharbor.errors import ArchiveIncomplete
from pgharbor.settings import load_settings
from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.tamper import flip_byte
from tests.fixtures.walgen import segment

NAMES = [f"00000001000000000000000{i}" for i in range(1, 8)]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, required=2)


def _stored(env: Env, i: int, name: str) -> Path:
    return env.roots[i] / "c1" / "wal" / name[:16] / name


def _push(env: Env, name: str, **kw: object) -> object:
    path = env.tmp / "pg_wal" / name
    if not path.exists():
        env.wal(name, segment(name, SYSID))
    return push(kw.get("settings", env.settings), "c1", str(path))  # type: ignore[arg-type]


def test_a_foreign_or_missing_claim_takes_no_copy(env: Env) -> None:
    claim = env.roots[1] / "c1" / "cluster.json"
    doc = json.loads(claim.read_text())
    claim.write_text(json.dumps({**doc, "system_identifier": "42"}))  # another cluster's
    with pytest.raises(ArchiveIncomplete, match="claims the folder for system identifier 42"):
        _push(env, NAMES[0])
    assert not _stored(env, 1, NAMES[0]).exists()  # nothing written there
    claim.write_text(json.dumps({**doc, "target_id": "another-target"}))  # an alias
    with pytest.raises(ArchiveIncomplete, match="claimed through another target"):
        _push(env, NAMES[0])
    claim.write_text(json.dumps(doc))
    _push(env, NAMES[0])
    assert _stored(env, 1, NAMES[0]).exists()


def test_repush_over_corrupt_copies_heals_them_with_the_catalogs_word(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    _push(env, NAMES[0])
    good = (env.tmp / "pg_wal" / NAMES[0]).read_bytes()
    for i in (0, 1):
        flip_byte(_stored(env, i, NAMES[0]))  # every stored copy is damaged
    r = _push(env, NAMES[0])  # PostgreSQL offers the file again (after a crash)
    assert [o.status for o in r.outcomes] == ["stored", "stored"]  # type: ignore[attr-defined]
    assert "replaced a corrupt copy" in capsys.readouterr().err
    quarantined = list((env.roots[0] / "c1" / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].name.startswith(NAMES[0])
    out = env.tmp / "out"
    fetch(env.settings, "c1", NAMES[0], str(out))
    assert out.read_bytes() == good


def test_repush_without_the_catalogs_word_never_counts_a_corrupt_copy(env: Env) -> None:
    _push(env, NAMES[0])
    for i in (0, 1):
        flip_byte(_stored(env, i, NAMES[0]))
    damaged = [_stored(env, i, NAMES[0]).read_bytes() for i in (0, 1)]
    with sqlite3.connect(env.tmp / "catalog.db") as db:
        db.execute("DELETE FROM wal_copies")  # a catalog that cannot vouch for the content
    with pytest.raises(ArchiveIncomplete, match=r"stored copy is corrupt.*left in place"):
        _push(env, NAMES[0])  # not "already archived": PostgreSQL keeps the file
    assert [_stored(env, i, NAMES[0]).read_bytes() for i in (0, 1)] == damaged


def test_a_bad_option_on_one_target_fails_that_copy_only(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[targets.t2]\nbogus = 1\n")
    s = load_settings(
        catalog=env.url, config=str(config), env={"PGHARBOR_STATE_DIR": str(tmp_path / "state")}
    )
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        db.execute("UPDATE clusters SET required_copies = 1")
    r = _push(env, NAMES[0], settings=s)
    assert [o.status for o in r.outcomes] == ["stored", "failed"]  # type: ignore[attr-defined]
    assert "bogus" in r.outcomes[1].detail  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pgharbor: warning:") and "bogus" in err


def test_wal_verify_finds_every_bad_copy_and_gap_and_repairs_copies(env: Env) -> None:
    for n in NAMES:
        _push(env, n)
    flip_byte(_stored(env, 0, NAMES[1]))  # a flipped byte at rest on t1
    _stored(env, 1, NAMES[2]).unlink()  # a copy lost on t2
    for i in (0, 1):
        _stored(env, i, NAMES[4]).unlink()  # lost everywhere: a gap
    r = verify(env.settings, "c1")
    bad = {(b.target, b.name, b.problem.split(":")[0]) for b in r.bad}
    assert ("t1", NAMES[1], NAMES[1]) in bad or any(
        b.target == "t1" and b.name == NAMES[1] and "checksum" in b.problem for b in r.bad
    )
    assert ("t2", NAMES[2], "missing") in bad
    assert {b.name for b in r.bad} == {NAMES[1], NAMES[2], NAMES[4]}
    assert [(g.first, g.last, g.segments) for g in r.gaps] == [(NAMES[4], NAMES[4], 1)]
    assert not r.ok
    fixed = repair(env.settings, r)
    assert sorted(fixed.repaired) == [f"{NAMES[1]} -> t1", f"{NAMES[2]} -> t2"]
    assert fixed.failed == [f"{NAMES[4]}: no placement has a good copy"]
    again = verify(env.settings, "c1")
    assert {b.name for b in again.bad} == {NAMES[4]} and len(again.gaps) == 1


def test_durability_cannot_be_configured_away(env: Env, tmp_path: Path) -> None:
    """The undocumented `fsync = false` of file targets is gone: refused, one reason (D17)."""
    config = tmp_path / "nofsync.toml"
    config.write_text("[targets.t1]\nfsync = false\n[targets.t2]\nfsync = false\n")
    s = load_settings(
        catalog=env.url, config=str(config), env={"PGHARBOR_STATE_DIR": str(tmp_path / "state")}
    )
    with pytest.raises(ArchiveIncomplete, match="fsync"):
        _push(env, NAMES[0], settings=s)
    assert not _stored(env, 0, NAMES[0]).exists()


def test_index_and_chunk_sizes_are_bounded() -> None:
    """A chunk or pack index whose stored size claim is huge costs nothing (D11)."""
    import zstandard

    from pgharbor.backup.chunks import MAX_CHUNK, ChunkCodec
    from pgharbor.errors import IntegrityError

    codec = ChunkCodec()
    bomb = b"\x01" + zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    with pytest.raises(IntegrityError, match="claims"):
        codec.decode(bomb, 1 << 40)  # the size an index claims
    with pytest.raises(IntegrityError, match="frame claims"):
        codec.decode(bomb, MAX_CHUNK)  # a plausible claim, a frame that says otherwise
