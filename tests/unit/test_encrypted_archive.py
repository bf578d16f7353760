"""wal push / wal fetch with encryption keys, against a SQLite catalog and real file
targets: no plaintext reaches a target, fetch gives the same bytes back, a wrong or
missing key is a clear error that writes nothing, and archives stay readable when
encryption is turned on or a key is rotated."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pgharbor import crypto, envelope
from pgharbor.archive.fetch import fetch
from pgharbor.archive.push import push
from pgharbor.entry import main as entry_main
from pgharbor.errors import Conflict, EncryptionError, StorageError, WalNotArchived
from pgharbor.settings import Settings
from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import segment

MARKER = b"PGHARBOR-MARKER-7f3c1e-CONFIDENTIAL"
SEGS = [f"0000000100000000000000{i:02X}" for i in range(1, 6)]


def marked_segment(name: str) -> bytes:
    """A valid segment whose body is incompressible noise with the marker inside, so the
    marker survives zstd as a literal: an unencrypted copy would show it."""
    noise = bytearray(os.urandom(64 * 1024))
    for at in (100, 20_000, 50_000):
        noise[at : at + len(MARKER)] = MARKER
    return segment(name, SYSID, fill=bytes(noise))


def new_key(folder: Path, name: str) -> Path:
    path = folder / f"{name}.key"
    crypto.generate_key_file(path)
    return path


def with_keys(
    env: Env,
    cluster: dict[str, object] | None = None,
    targets: dict[str, dict[str, object]] | None = None,
    compression: str | None = None,
) -> Settings:
    s = env.settings.replace(clusters={"c1": cluster or {}}, targets=targets or {})
    return s.replace(compression=compression) if compression else s


def target_files(env: Env) -> list[Path]:
    return [p for root in env.roots for p in root.rglob("*") if p.is_file()]


def leaks(env: Env, needle: bytes) -> list[str]:
    return [str(p) for p in target_files(env) if needle in p.read_bytes()]


def stored(env: Env, root: int, name: str) -> Path:
    return env.roots[root] / "c1" / "wal" / name[:16] / name


def header(path: Path) -> dict[str, object]:
    blob = path.read_bytes()
    d: dict[str, object] = json.loads(blob[envelope.PREFIX : envelope.header_length(blob)])
    return d


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_no_plaintext_on_targets_and_fetch_is_identical(tmp_path: Path, compression: str) -> None:
    # control: without a key the marker is on the targets, so the scan below can see it
    (tmp_path / "control").mkdir()
    (tmp_path / "enc").mkdir()
    control = Env(tmp_path / "control")
    plain = with_keys(control, compression=compression)
    push(plain, "c1", control.wal(SEGS[0], marked_segment(SEGS[0])))
    assert len(leaks(control, MARKER)) == 2

    env = Env(tmp_path / "enc")
    s = with_keys(env, {"encryption_key_file": str(new_key(tmp_path, "k"))}, None, compression)
    originals = {n: marked_segment(n) for n in SEGS}
    for n, data in originals.items():
        r = push(s, "c1", env.wal(n, data))
        assert [o.status for o in r.outcomes] == ["stored", "stored"]
    files = target_files(env)
    assert len(files) >= 2 * len(SEGS)
    assert leaks(env, MARKER) == []
    for data in originals.values():  # nor any other piece of the plaintext
        assert leaks(env, data[5000:5064]) == []
    for n, data in originals.items():
        h = header(stored(env, 0, n))
        assert "size" not in h and "sha256" not in h and "compression" not in h
        assert envelope.sha256(data) not in stored(env, 0, n).read_bytes().decode("latin-1")
        out = env.tmp / f"out-{n}"
        fetch(s, "c1", n, str(out))
        assert out.read_bytes() == data


def test_repush_is_idempotent_and_conflicts_still_refused(env: Env, tmp_path: Path) -> None:
    s = with_keys(env, {"encryption_key_file": str(new_key(tmp_path, "k"))})
    path = env.wal(SEGS[0], marked_segment(SEGS[0]))
    push(s, "c1", path)
    before = stored(env, 0, SEGS[0]).stat()
    r = push(s, "c1", path)
    assert [o.status for o in r.outcomes] == ["present", "present"]
    after = stored(env, 0, SEGS[0]).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    with pytest.raises(Conflict, match="different content"):
        push(s, "c1", env.wal(SEGS[0], marked_segment(SEGS[0])))


def test_wrong_key_fails_clearly_and_writes_nothing(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good, wrong = new_key(tmp_path, "good"), new_key(tmp_path, "wrong")
    s = with_keys(env, {"encryption_key_file": str(good)})
    push(s, "c1", env.wal(SEGS[0], marked_segment(SEGS[0])))
    good_id, wrong_id = (crypto.read_key_file(p, "t").id for p in (good, wrong))
    out = env.tmp / "out"

    with pytest.raises(EncryptionError) as ei:
        fetch(with_keys(env, {"encryption_key_file": str(wrong)}), "c1", SEGS[0], str(out))
    assert f"encrypted with key {good_id}, the configured key is {wrong_id}" in str(ei.value)
    assert ei.value.code not in (0, 1)  # never PostgreSQL's "not in the archive"
    with pytest.raises(EncryptionError, match="no encryption key is configured") as e2:
        fetch(with_keys(env), "c1", SEGS[0], str(out))
    assert e2.value.hint and "[clusters.c1]" in e2.value.hint
    assert not out.exists()
    assert not [p for p in env.tmp.rglob(".pgharbor-fetch*")]

    # what PostgreSQL's restore_command sees: one line, a code that is not 1, no file
    config = env.tmp / "pgharbor.toml"
    config.write_text(f'[clusters.c1]\nencryption_key_file = "{wrong}"\n')
    monkeypatch.setenv("PGHARBOR_STATE_DIR", str(env.settings.state_dir))
    capsys.readouterr()
    code = entry_main(
        ["--catalog", env.url, "--config", str(config), "wal", "fetch", "c1", SEGS[0], str(out)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EncryptionError.code and code != 1
    assert len(err) == 1 and err[0].startswith("pgharbor: error: ") and good_id in err[0]
    assert not out.exists()
    # a file that is not archived is still exit 1
    with pytest.raises(WalNotArchived):
        fetch(with_keys(env, {"encryption_key_file": str(wrong)}), "c1", SEGS[1], str(out))


def test_bad_key_file_stops_push_before_anything_is_written(env: Env, tmp_path: Path) -> None:
    key = new_key(tmp_path, "k")
    key.chmod(0o644)
    s = with_keys(env, {"encryption_key_file": str(key)})
    with pytest.raises(EncryptionError, match="accessible by group or others"):
        push(s, "c1", env.wal(SEGS[0], marked_segment(SEGS[0])))
    claims = ("cluster.json", "pgharbor-target.json")
    assert target_files(env) == [p for p in target_files(env) if p.name in claims]
    assert env.copies() == {}


def test_tampered_copy_falls_back_to_the_next_target(env: Env, tmp_path: Path) -> None:
    s = with_keys(env, {"encryption_key_file": str(new_key(tmp_path, "k"))})
    data = marked_segment(SEGS[0])
    push(s, "c1", env.wal(SEGS[0], data))
    p = stored(env, 0, SEGS[0])
    blob = bytearray(p.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    p.write_bytes(bytes(blob))
    out = env.tmp / "out"
    r = fetch(s, "c1", SEGS[0], str(out))
    assert r.target == "t2" and "does not authenticate" in r.skipped[0]
    assert out.read_bytes() == data


def test_turning_encryption_on_and_rotating_keys(env: Env, tmp_path: Path) -> None:
    k1, k2 = new_key(tmp_path, "k1"), new_key(tmp_path, "k2")
    data = {n: marked_segment(n) for n in SEGS[:3]}
    push(with_keys(env), "c1", env.wal(SEGS[0], data[SEGS[0]]))  # before encryption
    on = with_keys(env, {"encryption_key_file": str(k1)})
    push(on, "c1", env.wal(SEGS[1], data[SEGS[1]]))
    rotated = with_keys(
        env, {"encryption_key_file": str(k2), "encryption_old_key_files": [str(k1)]}
    )
    push(rotated, "c1", env.wal(SEGS[2], data[SEGS[2]]))
    ids = [header(stored(env, 0, n)).get("key_id") for n in SEGS[:3]]
    assert ids == [None, crypto.read_key_file(k1, "t").id, crypto.read_key_file(k2, "t").id]
    # with a key set, encryption is required: the plaintext file from before is refused...
    with pytest.raises(StorageError, match="not encrypted, and encryption is required"):
        fetch(rotated, "c1", SEGS[0], str(env.tmp / "refused"))
    assert not (env.tmp / "refused").exists()
    # ...until the operator says the archive predates encryption
    lenient = with_keys(
        env,
        {
            "encryption_key_file": str(k2),
            "encryption_old_key_files": [str(k1)],
            "encryption_required": False,
        },
    )
    for n, d in data.items():  # everything stays readable with the rotated settings
        out = env.tmp / f"out-{n}"
        fetch(rotated if n != SEGS[0] else lenient, "c1", n, str(out))
        assert out.read_bytes() == d
    # re-pushing files stored before the rotation is recognised, whatever their key
    for n in SEGS[:2]:
        r = push(lenient, "c1", env.wal(n, data[n]))
        assert [o.status for o in r.outcomes] == ["present", "present"]
    # without the old key, the k1 copy cannot be compared: refused, never overwritten
    before = stored(env, 0, SEGS[1]).read_bytes()
    with pytest.raises(Conflict, match="cannot compare"):
        push(
            with_keys(env, {"encryption_key_file": str(k2)}), "c1", env.wal(SEGS[1], data[SEGS[1]])
        )
    assert stored(env, 0, SEGS[1]).read_bytes() == before


def test_per_target_key_wins(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kc, kt = new_key(tmp_path, "cluster"), new_key(tmp_path, "target")
    s = with_keys(
        env,
        {"encryption_key_file": str(kc)},
        {"t2": {"encryption_key_env": "PGH_TEST_T2_KEY"}},
    )
    monkeypatch.setenv("PGH_TEST_T2_KEY", kt.read_text())
    data = marked_segment(SEGS[0])
    push(s, "c1", env.wal(SEGS[0], data))
    h1, h2 = header(stored(env, 0, SEGS[0])), header(stored(env, 1, SEGS[0]))
    assert h1["key_id"] == crypto.read_key_file(kc, "t").id
    assert h2["key_id"] == crypto.read_key_file(kt, "t").id
    (env.roots[0] / "c1" / "wal").rename(env.tmp / "t1-wal-away")
    out = env.tmp / "out"
    assert fetch(s, "c1", SEGS[0], str(out)).target == "t2"
    assert out.read_bytes() == data


def test_planted_plaintext_wal_is_refused_when_encryption_is_on(env: Env, tmp_path: Path) -> None:
    """Whoever can write to a target cannot hand PostgreSQL a WAL file of their own: with a
    key configured, a plaintext object under a WAL name is refused (D14)."""
    s = with_keys(env, {"encryption_key_file": str(new_key(tmp_path, "k"))})
    data = marked_segment(SEGS[0])
    push(s, "c1", env.wal(SEGS[0], data))
    planted = marked_segment(SEGS[0])  # valid WAL, other contents
    meta = envelope.Meta(
        "wal",
        SEGS[0],
        "c1",
        envelope.read_meta(stored(env, 0, SEGS[0]).read_bytes()).cluster_id,
        str(SYSID),
        size=len(planted),
        sha256=envelope.sha256(planted),
    )
    for root in (0, 1):
        stored(env, root, SEGS[0]).write_bytes(envelope.seal(meta, planted))
    out = env.tmp / "out"
    with pytest.raises(StorageError, match="not encrypted, and encryption is required"):
        fetch(s, "c1", SEGS[0], str(out))
    assert not out.exists()
