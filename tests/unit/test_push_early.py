"""The synchronous push's early start (the segment mapped, hashed and compressed by zstd
threads while the settings and the catalog are read): what it stores is what a plain
push stores, byte for byte, and a segment that changes meanwhile is not stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgharbor import envelope
from pgharbor.archive import early, push
from pgharbor.archive.fetch import fetch
from pgharbor.entry import main
from pgharbor.errors import ArchiveIncomplete
from tests.fixtures.builders import Env
from tests.fixtures.catalogs import SYSID
from tests.fixtures.walgen import segment

SEG1 = "000000010000000000000001"
SEG2 = "000000010000000000000002"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("PGHARBOR_STATE_DIR", str(tmp_path / "state"))
    return Env(tmp_path)


def _compressible(name: str) -> bytes:
    """A segment whose body zstd really works on (text-like, so several jobs of it)."""
    words = b" ".join(b"%d:%x" % (i, i * 7919) for i in range(2_000_000))
    return segment(name, SYSID, fill=words[: 16 * 1024 * 1024 - 40])


def test_multithreaded_compression_round_trips_byte_identical() -> None:
    data = _compressible(SEG1)
    assert len(data) > 3 * envelope.JOB_SIZE  # several zstd jobs, on two threads
    payload = envelope.compress(data, "zstd", 3, threads=2)
    assert payload != envelope.compress(data, "zstd", 3)  # made by the threaded path
    assert envelope.decompress(payload, "zstd", len(data)) == data
    assert envelope.zstd().frame_content_size(payload) == len(data)


def test_early_started_push_stores_the_same_bytes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = env.wal(SEG1, _compressible(SEG1))

    def no_second_read(p: str) -> object:
        raise AssertionError(f"{p} read again: the early start was not used")

    monkeypatch.setattr(push, "read_wal_file", no_second_read)
    assert main(["--catalog", env.url, "wal", "push", "c1", path]) == 0
    assert early._started == {}  # taken by the push
    out = env.tmp / "restored"
    fetch(env.settings, "c1", SEG1, str(out))
    assert out.read_bytes() == Path(path).read_bytes()
    assert env.copies() == {SEG1: [("t1", "ok"), ("t2", "ok")]}


def test_segment_changed_while_archived_is_not_stored(env: Env) -> None:
    path = env.wal(SEG2, segment(SEG2, SYSID))
    early.begin(path)  # mapped and hashed, as run_hot does first
    with open(path, "r+b") as f:  # rewritten meanwhile (PostgreSQL never does this)
        f.seek(8192)
        f.write(os.urandom(8192))
    later = os.stat(path).st_mtime_ns + 1_000_000
    os.utime(path, ns=(later, later))
    with pytest.raises(ArchiveIncomplete, match="changed while it was being archived"):
        push.push(env.settings, "c1", path)
    assert env.stored(env.roots[0]) == env.stored(env.roots[1]) == []
    # PostgreSQL retries: the file as it is now is archived whole
    result = push.push(env.settings, "c1", path)
    assert [o.status for o in result.outcomes] == ["stored", "stored"]
