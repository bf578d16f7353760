"""Hostile restore inputs: whoever can write to a target must not be able to make a restore
write outside the data directory and the tablespace folders, nor hand it objects that are
not encrypted when a key is configured (D3, the restore side of D14).

A real backup of an encrypted cluster; each case rewrites what is on the target (the
manifest re-sealed with the cluster's key, so only the restore's own checks stand in the
way), runs `pgharbor restore`, and checks the refusal is one line and that nothing outside
the data directory was created or changed: a sentinel folder (with a file and a
subfolder) that the hostile entries aim at, and the target itself."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pgharbor import crypto, envelope
from pgharbor.backup.chunkmap import chunks_of
from pgharbor.backup.chunks import INDEX_FORMAT
from pgharbor.backup.lease import Lease
from pgharbor.backup.manifest import BackupManifest, FileEntry, TablespaceEntry
from pgharbor.envelope import zstd
from pgharbor.storage import open_storage
from pgharbor.storage.layout import manifest_key, part_key
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import BINDIR, PgCluster, _chown, run_as_server_user, server_dir

pytestmark = pytest.mark.integration


@dataclass
class Setup:
    base: Path
    harbor: Harbor
    primary: PgCluster
    target: Path  # the file target's root
    backups: list[str]
    ring: crypto.Keyring
    wrong: crypto.Keyring
    outside: Path
    n: int = 0

    def manifest(self, backup: str | None = None) -> BackupManifest:
        path = self.target / manifest_key("c1", backup or self.backups[-1])
        return BackupManifest.unseal(path.read_bytes(), self.ring)

    def put(self, key: str, blob: bytes) -> None:
        (self.target / key).parent.mkdir(parents=True, exist_ok=True)
        (self.target / key).write_bytes(blob)

    def pgdata(self) -> Path:
        self.n += 1
        return server_dir(self.base / f"r{self.n}") / "data"


def _snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every entry below the roots: mode and contents (or link target)."""
    seen: dict[str, tuple[int, str]] = {}
    for root in roots:
        for p in [root, *root.rglob("*")]:
            if "leases" in p.parts:
                continue
            st = p.lstat()
            if p.is_symlink():
                what = os.readlink(p)
            elif p.is_file():
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = "dir"
            seen[str(p)] = (st.st_mode, what)
    return seen


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    base = server_dir(tempfile.mkdtemp(prefix="pgharbor-hostile-", dir="/tmp"))
    harbor = Harbor(base)
    harbor.run("init")
    keys = server_dir(base / "keys", 0o700)
    harbor.run("key", "generate", str(keys / "c1.key"))
    harbor.run("key", "generate", str(keys / "wrong.key"))
    config = base / "pgharbor.toml"
    config.write_text(f'[clusters.c1]\nencryption_key_file = "{keys / "c1.key"}"\n')
    harbor.env["PGHARBOR_CONFIG"] = str(config)
    target = harbor.target("t1")
    outside = server_dir(base / "outside")
    (outside / "victim.txt").write_text("precious\n")
    server_dir(outside / "sub")
    _chown(outside, recursive=True)  # writable by the restore's OS user: only checks stop it
    primary = PgCluster(base / "primary", name="primary").initdb()
    primary.start()
    try:
        harbor.register(primary, "c1", "t1")
        harbor.archive_to(primary)
        primary.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        harbor.run("backup", "create", "c1")
        primary.execute("INSERT INTO t SELECT generate_series(1001, 2000)")
        harbor.run("backup", "create", "c1")
        primary.wait_for_archived(primary.switch_wal(), timeout=120)
        backups = [b["id"] for b in harbor.json("backup", "list", "c1")]
        key = crypto.read_key_file(keys / "c1.key", "test")
        bad = crypto.read_key_file(keys / "wrong.key", "test")
        yield Setup(
            base,
            harbor,
            primary,
            target,
            backups,
            crypto.Keyring(key, {key.id: key}),
            crypto.Keyring(bad, {bad.id: bad}),
            outside,
        )
    finally:
        primary.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def tampered(s: Setup) -> Iterator[None]:
    """Whatever the case changes on the target is put back afterwards; nothing outside
    the data directory (the sentinel folder, the target) may change meanwhile."""
    keep = s.base / "target-copy"
    shutil.copytree(s.target, keep, symlinks=True)
    before = _snapshot(s.outside)
    try:
        yield
        assert _snapshot(s.outside) == before
    finally:
        shutil.rmtree(s.target)
        shutil.move(keep, s.target)
        _chown(s.target, recursive=True)


def _restore_fails(s: Setup, *more: str) -> str:
    dest = s.pgdata()
    line = s.harbor.fails("restore", "c1", "--pgdata", str(dest), *more)
    assert not dest.exists(), "a refused manifest must not create anything"
    return line


def _through(outside: Path) -> list[FileEntry]:
    return [
        FileEntry("evil_link", "l", 0o777, link=str(outside)),
        FileEntry("evil_link/THROUGH", "f", 0o600),
    ]


def _with_files(extra: list[FileEntry]) -> Callable[[BackupManifest, Setup], BackupManifest]:
    return lambda m, s: replace(m, files=m.files + extra)


def _huge(m: BackupManifest, s: Setup) -> BackupManifest:
    files = [replace(f, size=1 << 50) if f.path == "PG_VERSION" else f for f in m.files]
    return replace(m, files=files)


def _tablespace_outside(m: BackupManifest, s: Setup) -> BackupManifest:
    return replace(m, tablespaces=[TablespaceEntry("16500", str(s.outside), [])])


def _tablespace_stray(m: BackupManifest, s: Setup) -> BackupManifest:
    loose = FileEntry("authorized_keys", "f", 0o600, 0)
    return replace(m, tablespaces=[TablespaceEntry("16500", str(s.base / "ts"), [loose])])


HOSTILE: list[tuple[str, Callable[[BackupManifest, Setup], BackupManifest], str]] = [
    ("relative", _with_files([FileEntry("../outside/ESCAPED", "f", 0o600)]), "not a normal"),
    (
        "absolute",
        lambda m, s: _with_files([FileEntry(str(s.outside / "victim.txt"), "f", 0o600)])(m, s),
        "is absolute",
    ),
    (
        "through a symlink",
        lambda m, s: _with_files(
            [
                FileEntry("evil_link", "l", 0o777, link=str(s.outside)),
                FileEntry("evil_link/THROUGH", "f", 0o600),
            ]
        )(m, s),
        "is a symlink",
    ),
    ("setuid folder", _with_files([FileEntry("evil_dir", "d", 0o4777)]), "setuid"),
    ("world-writable file", _with_files([FileEntry("global/w", "f", 0o666)]), "world-writable"),
    ("device", _with_files([FileEntry("dev", "c", 0o600)]), "type 'c'"),
    ("huge size", _huge, "beyond the backup's chunk map"),
    ("tablespace outside", _tablespace_outside, "is not empty"),
    ("tablespace stray file", _tablespace_stray, "PG_<version>_<catalog version>"),
]


@pytest.mark.parametrize(("case", "change", "reason"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_manifest_is_refused_before_anything_is_written(
    setup: Setup, case: str, change: Callable[[BackupManifest, Setup], BackupManifest], reason: str
) -> None:
    with tampered(setup):
        m = change(setup.manifest(), setup)
        setup.put(manifest_key("c1", m.id), m.seal(setup.ring))
        line = _restore_fails(setup)
        assert reason in line, line


def test_swapped_chunk_map_part_is_refused(setup: Setup) -> None:
    first, last = setup.backups
    with tampered(setup):
        setup.put(part_key("c1", last, 0), (setup.target / part_key("c1", first, 0)).read_bytes())
        line = _restore_fails(setup)
        assert "chunkmap/000000" in line and f"not part {last}/000000" in line


@pytest.mark.parametrize("how", ["plaintext", "wrong key"])
def test_planted_manifest_is_refused(setup: Setup, how: str) -> None:
    with tampered(setup):
        m = setup.manifest()
        keys = None if how == "plaintext" else setup.wrong
        setup.put(manifest_key("c1", m.id), m.seal(keys))
        line = _restore_fails(setup)
        expected = (
            "is not encrypted, and encryption is required"
            if how == "plaintext"
            else "was encrypted with key"
        )
        assert expected in line, line


def test_planted_plaintext_chunk_map_part_is_refused(setup: Setup) -> None:
    with tampered(setup):
        key = part_key("c1", setup.backups[-1], 0)
        meta, data = envelope.unseal((setup.target / key).read_bytes(), setup.ring)
        setup.put(key, envelope.seal(meta, data, None))
        line = _restore_fails(setup)
        assert "is not encrypted, and encryption is required" in line, line


def test_planted_plaintext_chunk_is_refused(setup: Setup) -> None:
    """The chunk index (not sealed) is pointed at a plaintext chunk in a new pack: the
    restore refuses it halfway, and says the data directory will not start."""
    m = setup.manifest()
    f = next(f for f in m.files if f.path == "PG_VERSION")
    ids = m.chunkmap(lambda k: (setup.target / k).read_bytes(), setup.ring)
    (cid,) = ids.ids(f.first_chunk, chunks_of(f.size, m.chunk_size))
    with tampered(setup):
        index = setup.target / "chunks" / "index"
        for p in index.iterdir():
            doc = json.loads(zstd().ZstdDecompressor().decompress(p.read_bytes()))
            kept = [c for c in doc["chunks"] if c[0] != cid.hex()]
            if len(kept) < len(doc["chunks"]):
                doc["chunks"] = kept
                p.write_bytes(zstd().ZstdCompressor().compress(json.dumps(doc).encode()))
        planted = b"\x00" + b"99\n"
        pack = "f" * 32
        setup.put(f"chunks/packs/ff/{pack}", planted)
        new = {
            "format": INDEX_FORMAT,
            "pack": pack,
            "size": len(planted),
            "chunks": [[cid.hex(), 0, len(planted), 3]],
        }
        (index / pack).write_bytes(zstd().ZstdCompressor().compress(json.dumps(new).encode()))
        dest = setup.pgdata()
        line = setup.harbor.fails("restore", "c1", "--pgdata", str(dest))
        assert "PG_VERSION" in line and "is not encrypted, and encryption is required" in line
        assert "is incomplete and will not start" in line
        assert not (dest / "global" / "pg_control").exists()


def test_planted_plaintext_wal_is_refused_by_wal_fetch(setup: Setup) -> None:
    first = min(f for f in setup.harbor.wal_files() if len(f) == 24)
    key = next(p for p in (setup.target / "c1" / "wal").rglob(first))
    meta, data = envelope.unseal(key.read_bytes(), setup.ring)
    with tampered(setup):
        plain = meta.replace(compression="none")
        key.write_bytes(envelope.seal(plain, data, None))
        dest = setup.base / "fetched"
        line = setup.harbor.fails("wal", "fetch", "c1", first, str(dest))
        assert "is not encrypted, and encryption is required" in line
        assert not dest.exists()


def test_restore_waits_for_no_gc_and_leaves_no_lease(setup: Setup) -> None:
    storage = open_storage(f"file://{setup.target}")
    server_dir(setup.target / "chunks" / "leases")  # as the restore's OS user would have it
    with Lease(storage, "gc", "backup delete c1/test"):
        _chown(setup.target / "chunks" / "leases", recursive=True)  # readable by the restore
        line = _restore_fails(setup)
    assert "cannot take a restore lease" in line and "gc lease of backup delete c1/test" in line
    dest = setup.pgdata()
    setup.harbor.run("restore", "c1", "--pgdata", str(dest))  # the untampered backup
    run_as_server_user([BINDIR / "pg_verifybackup", "-n", dest])
    assert not list((setup.target / "chunks" / "leases").iterdir())
