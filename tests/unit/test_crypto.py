"""Encryption keys, the encrypted envelope and the encrypting chunk codec (pgharbor.crypto)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from pgharbor import access, crypto, envelope
from pgharbor.backup.chunkmap import ChunkMapWriter, Identity
from pgharbor.backup.chunks import ChunkCodec, ChunkStore, EncryptedChunkCodec
from pgharbor.backup.delete import live_chunks
from pgharbor.backup.manifest import BackupManifest, FileEntry
from pgharbor.errors import ConfigError, EncryptionError, IntegrityError
from pgharbor.settings import Settings, load_settings
from pgharbor.storage.layout import manifest_key, part_key, ref_key
from pgharbor.storage.memory import MemoryStorage


def key_file(folder: Path, name: str = "k", mode: int = 0o600, text: str | None = None) -> Path:
    p = folder / name
    p.write_text(secrets.token_hex(32) + "\n" if text is None else text)
    p.chmod(mode)
    return p


def ring(folder: Path, name: str = "k") -> crypto.Keyring:
    k = crypto.read_key_file(key_file(folder, name), "test")
    return crypto.Keyring(k, {k.id: k})


def settings(**clusters: dict[str, object]) -> Settings:
    return load_settings(env={}).replace(clusters=dict(clusters))


# -- keys ------------------------------------------------------------------------------


def test_key_file_formats_hex_and_base64_give_the_same_key(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    a = crypto.read_key_file(key_file(tmp_path, "hex", text=raw.hex().upper() + "\n"), "t")
    b = crypto.read_key_file(key_file(tmp_path, "b64", text=base64.b64encode(raw).decode()), "t")
    assert a.id == b.id and len(a.id) == 16
    assert raw.hex() not in repr(a) and a.id in repr(a)
    other = crypto.read_key_file(key_file(tmp_path, "other"), "t")
    assert other.id != a.id


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (None, 0o640, "accessible by group or others (mode 0640)"),
        (None, 0o604, "accessible by group or others (mode 0604)"),
        (secrets.token_hex(31), 0o600, "does not hold a key"),
        (secrets.token_hex(33), 0o600, "does not hold a key"),
        (base64.b64encode(secrets.token_bytes(31)).decode(), 0o600, "does not hold a key"),
        ("correct horse battery staple 1234", 0o600, "does not hold a key"),
        ("", 0o600, "does not hold a key"),
    ],
    ids=["group", "world", "short-hex", "long-hex", "short-b64", "passphrase", "empty"],
)
def test_key_file_refusals(tmp_path: Path, text: str | None, mode: int, message: str) -> None:
    p = key_file(tmp_path, text=text, mode=mode)
    with pytest.raises(EncryptionError, match=re.escape(message)) as ei:
        crypto.read_key_file(p, "[clusters.c1] encryption_key_file")
    assert str(p) in str(ei.value) and "[clusters.c1]" in str(ei.value)
    if text is not None:
        assert text.strip() == "" or text not in ei.value.line()  # never echo key material


def test_key_file_missing_directory_and_huge(tmp_path: Path) -> None:
    with pytest.raises(EncryptionError, match="does not exist") as ei:
        crypto.read_key_file(tmp_path / "nope", "s")
    assert ei.value.hint and "key generate" in ei.value.hint
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(EncryptionError, match="not a regular file"):
        crypto.read_key_file(tmp_path / "d", "s")
    with pytest.raises(EncryptionError, match="too large"):
        crypto.read_key_file(key_file(tmp_path, "big", text="0" * 5000), "s")


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    s = settings(c1={"encryption_key_env": "PGH_TEST_KEY"})
    monkeypatch.delenv("PGH_TEST_KEY", raising=False)
    with pytest.raises(EncryptionError, match=r"PGH_TEST_KEY .* is not set"):
        access.keyring(s, "c1")
    monkeypatch.setenv("PGH_TEST_KEY", base64.b64encode(raw).decode())
    r = access.keyring(s, "c1")
    assert r is not None and r.current is not None
    assert r.current.id == crypto.Key(raw, "x").id
    monkeypatch.setenv("PGH_TEST_KEY", "not a key")
    with pytest.raises(EncryptionError, match="environment variable PGH_TEST_KEY does not hold"):
        access.keyring(s, "c1")


def test_settings_validation_and_target_key_wins(tmp_path: Path) -> None:
    kc, kt, old = key_file(tmp_path, "c"), key_file(tmp_path, "t"), key_file(tmp_path, "o")
    assert access.keyring(settings(), "c1", "t1") is None
    with pytest.raises(ConfigError, match="not both"):
        access.keyring(
            settings(c1={"encryption_key_file": str(kc), "encryption_key_env": "X"}), "c1"
        )
    with pytest.raises(ConfigError, match=r"unknown setting.*encryption_keyfile"):
        access.keyring(settings(c1={"encryption_keyfile": str(kc)}), "c1")
    with pytest.raises(ConfigError, match="encryption_key_file must be a string"):
        access.keyring(settings(c1={"encryption_key_file": [str(kc), str(kt)]}), "c1")
    s = settings(
        c1={"encryption_key_file": str(kc), "encryption_old_key_files": [str(old)]}
    ).replace(targets={"t2": {"encryption_key_file": str(kt), "region": "x"}})
    on_t1, on_t2 = access.keyring(s, "c1", "t1"), access.keyring(s, "c1", "t2")
    assert on_t1 is not None and on_t2 is not None and on_t1.current and on_t2.current
    ids = {n: crypto.read_key_file(p, "t").id for n, p in (("c", kc), ("t", kt), ("o", old))}
    assert on_t1.current.id == ids["c"] and set(on_t1.keys) == {ids["c"], ids["o"]}
    assert on_t2.current.id == ids["t"] and set(on_t2.keys) == set(ids.values())
    # the storage backend never sees encryption settings
    assert s.target_options("t2") == {"region": "x", "timeout": s.target_timeout}


def test_generate_key_file(tmp_path: Path) -> None:
    p = tmp_path / "new.key"
    k = crypto.generate_key_file(p)
    assert p.stat().st_mode & 0o777 == 0o600
    assert crypto.read_key_file(p, "t").id == k.id
    before = p.read_bytes()
    with pytest.raises(EncryptionError, match="refusing to overwrite"):
        crypto.generate_key_file(p)
    assert p.read_bytes() == before


def test_no_key_configured_loads_no_cryptography() -> None:
    """The archive hot path pays nothing for encryption it does not use."""
    code = (
        "import sys, dataclasses\n"
        "from pgharbor import access\n"
        "from pgharbor.archive import push, fetch\n"
        "from pgharbor.settings import load_settings\n"
        "s = load_settings(env={})\n"
        "assert access.keyring(s, 'c1', 't1') is None\n"
        "print('cryptography' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- envelope --------------------------------------------------------------------------


def _meta(
    data: bytes, name: str = "000000010000000000000001", compression: str = "zstd"
) -> envelope.Meta:
    return envelope.Meta(
        kind="wal",
        name=name,
        cluster="c1",
        cluster_id="id-1",
        system_identifier="42",
        size=len(data),
        sha256=envelope.sha256(data),
        compression=compression,
    )


def test_envelope_encrypted_roundtrip_and_public_header(tmp_path: Path) -> None:
    keys = ring(tmp_path)
    data = b"secret marker " * 1000 + os.urandom(1000)
    blob = envelope.seal(_meta(data), envelope.compress(data, "zstd", 3), keys)
    assert b"secret marker" not in blob
    head = envelope.read_meta(blob[: envelope.HEAD_READ])
    assert head.encryption == "aes-256-gcm" and head.key_id == keys.current.id  # type: ignore[union-attr]
    assert head.size == -1 and head.sha256 == "" and head.compression == ""
    public = json.loads(blob[envelope.PREFIX : envelope.header_length(blob)])
    assert set(public) == {
        "kind",
        "name",
        "cluster",
        "cluster_id",
        "system_identifier",
        "encryption",
        "key_id",
        "nonce",
        "mac",
    }
    assert envelope.sha256(data) not in blob.decode("latin-1")
    meta, out = envelope.unseal(blob, keys)
    assert out == data and meta.size == len(data) and meta.compression == "zstd"
    assert meta.sha256 == envelope.sha256(data)
    # the keyed fingerprint answers "same contents?" from the header alone
    assert envelope.same_contents(head, envelope.sha256(data), keys)
    assert not envelope.same_contents(head, envelope.sha256(b"other"), keys)
    # two seals of the same contents differ (random nonce)
    assert envelope.seal(_meta(data), envelope.compress(data, "zstd", 3), keys) != blob


def test_envelope_wrong_key_missing_key_and_plain_objects(tmp_path: Path) -> None:
    k1, k2 = ring(tmp_path, "k1"), ring(tmp_path, "k2")
    data = os.urandom(3000)
    blob = envelope.seal(_meta(data, compression="none"), data, k1)
    with pytest.raises(EncryptionError) as ei:
        envelope.unseal(blob, k2)
    msg = str(ei.value)
    assert f"encrypted with key {k1.current.id}, the configured key is {k2.current.id}" in msg  # type: ignore[union-attr]
    with pytest.raises(EncryptionError, match="no encryption key is configured") as e2:
        envelope.unseal(blob)
    assert (
        e2.value.hint
        and "[clusters.c1]" in e2.value.hint
        and "encryption_key_file" in e2.value.hint
    )
    with pytest.raises(EncryptionError, match="no encryption key is configured"):
        envelope.same_contents(envelope.read_meta(blob), envelope.sha256(data), None)
    # an old key in the ring reads
    both = crypto.Keyring(k2.current, {**k1.keys, **k2.keys})
    assert envelope.unseal(blob, both)[1] == data
    # with a key configured, an unencrypted object is refused (encryption_required is on
    # by default), unless encryption_required = false (an archive from before encryption)
    plain = envelope.seal(_meta(data, compression="none"), data)
    with pytest.raises(IntegrityError, match="not encrypted, and encryption is required"):
        envelope.unseal(plain, k1)
    assert envelope.unseal(plain, k1.with_required(False))[1] == data


def test_envelope_tampering_is_detected(tmp_path: Path) -> None:
    keys = ring(tmp_path)
    data = os.urandom(3000)
    blob = envelope.seal(_meta(data, compression="none"), data, keys)
    end = envelope.header_length(blob)
    for pos in (end + 5, len(blob) - 1, len(blob) - 20):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(IntegrityError, match="does not authenticate"):
            envelope.unseal(bytes(bad), keys)
    # the public header is authenticated: another name of the same length is refused
    renamed = blob.replace(b"000000010000000000000001", b"000000010000000000000002", 1)
    assert renamed != blob
    with pytest.raises(IntegrityError, match="does not authenticate"):
        envelope.unseal(renamed, keys)
    with pytest.raises(IntegrityError):
        envelope.unseal(blob[:-1], keys)


# -- chunks ----------------------------------------------------------------------------


def test_chunk_ids_are_keyed_and_dedup_within_one_key(tmp_path: Path) -> None:
    k1, k2 = ring(tmp_path, "k1"), ring(tmp_path, "k2")
    c1, c1b, c2 = EncryptedChunkCodec(k1), EncryptedChunkCodec(k1), EncryptedChunkCodec(k2)
    raw = b"page" * 16384
    assert c1.chunk_id(raw) == c1b.chunk_id(raw)  # same key: same id, so dedup works
    assert c1.chunk_id(raw) != c2.chunk_id(raw)  # another key: unrelated id
    assert c1.chunk_id(raw) != hashlib.sha256(raw).digest() == ChunkCodec().chunk_id(raw)
    blob = c1.encode(raw)
    assert b"pagepage" not in blob and blob[:1] == b"\x02"
    assert len(blob) < 1000  # compressed before encryption
    assert c1.decode(blob, len(raw)) == raw
    with pytest.raises(EncryptionError, match=f"encrypted with key {k1.current.id}"):  # type: ignore[union-attr]
        c2.decode(blob, len(raw))
    with pytest.raises(EncryptionError, match="no encryption key is configured"):
        ChunkCodec().decode(blob, len(raw))
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError, match="does not authenticate"):
        c1.decode(bytes(bad), len(raw))


def test_chunk_store_roundtrip_dedup_and_mixed(tmp_path: Path) -> None:
    keys = ring(tmp_path)
    storage = MemoryStorage(f"memory://t-{secrets.token_hex(4)}")
    plain_store = ChunkStore(storage, ChunkCodec())
    old = os.urandom(70_000)
    plain_id = plain_store.codec.chunk_id(old)
    plain_store.add(plain_id, len(old), plain_store.codec.encode(old))
    plain_store.flush()

    store = ChunkStore(storage, EncryptedChunkCodec(keys))
    store.load()
    raws = [os.urandom(65536) for _ in range(5)]
    added = 0
    for raw in raws + raws:  # the second round is all duplicates
        cid = store.codec.chunk_id(raw)
        added += store.add(cid, len(raw), store.codec.encode(raw)) if not store.has(cid) else 0
    store.flush()
    assert store.new_chunks == 5 and 5 * 65536 < added < 5 * 65600

    reader = ChunkStore(storage, EncryptedChunkCodec(keys))
    reader.load()
    for raw in raws:
        assert reader.read(reader.codec.chunk_id(raw)) == raw
    # a plaintext chunk is refused while encryption is required (the default with a key),
    # and readable with encryption_required = false (a backup from before encryption)
    with pytest.raises(IntegrityError, match="not encrypted"):
        reader.read(plain_id)
    lenient = ChunkStore(storage, EncryptedChunkCodec(keys.with_required(False)))
    lenient.load()
    assert lenient.read(plain_id) == old
    for obj in storage.list(""):
        assert raws[0][:64] not in storage.get(obj.key)


def test_manifest_encrypted_and_gc_needs_the_keys(tmp_path: Path) -> None:
    keys = ring(tmp_path)
    m = BackupManifest(
        id="20260101T000000Z-abcd",
        cluster="c1",
        cluster_id="id-1",
        system_identifier="42",
        label="x",
        pg_version_num=150000,
        chunk_size=65536,
        chunk_count=1,
        files=[FileEntry("base/16384/secret_table_file", "f", 0o600, 5, first_chunk=0)],
    )
    blob = m.seal(keys)
    assert b"secret_table_file" not in blob and b"base/16384" not in blob
    assert BackupManifest.unseal(blob, keys).files == m.files
    storage = MemoryStorage(f"memory://t-{secrets.token_hex(4)}")
    ids = ChunkMapWriter([storage], Identity("c1", "id-1", "42", m.id), keys)
    ids.append(bytes.fromhex("ab" * 32))
    ids.close()
    assert bytes.fromhex("ab" * 32) not in storage.get(part_key("c1", m.id, 0))
    storage.put(manifest_key("c1", m.id), blob)
    storage.put(ref_key("c1", m.id), m.id.encode())
    with pytest.raises(EncryptionError, match="chunks were not collected"):
        live_chunks(storage)
    assert set(live_chunks(storage, lambda cluster: keys)) == {bytes.fromhex("ab" * 32)}


def test_codec_for_cluster(tmp_path: Path) -> None:
    kc, kt = key_file(tmp_path, "c"), key_file(tmp_path, "t")
    assert type(access.chunk_codec(settings(), "c1", ["t1"])) is ChunkCodec
    s = settings(c1={"encryption_key_file": str(kc)})
    codec = access.chunk_codec(s, "c1", ["t1", "t2"])
    assert isinstance(codec, EncryptedChunkCodec) and codec.keys is not None
    s2 = s.replace(targets={"t2": {"encryption_key_file": str(kt)}})
    with pytest.raises(EncryptionError, match="different encryption keys"):
        access.chunk_codec(s2, "c1", ["t1", "t2"])
    reading = access.chunk_codec(s2, "c1", ["t1", "t2"], writing=False)
    assert reading.keys is not None and len(reading.keys.keys) == 2


def test_key_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pgharbor.cli.main import run

    p = tmp_path / "c1.key"
    assert run(["key", "generate", str(p)]) == 0
    key_id = crypto.read_key_file(p, "t").id
    assert f"key id {key_id}" in capsys.readouterr().out
    assert run(["key", "id", str(p)]) == 0
    assert capsys.readouterr().out.strip() == key_id
    assert run(["key", "generate", str(p)]) == EncryptionError.code
    p.chmod(0o644)
    assert run(["key", "id", str(p)]) == EncryptionError.code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("pgharbor: error: ") for line in err)
    assert "chmod 600" in err[1]
