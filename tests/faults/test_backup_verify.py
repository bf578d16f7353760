"""backup verify reads every chunk of a backup on each placement on its own: a flipped
byte, a missing pack and a damaged chunk map part are each found on the placement that
has them (named: file and chunk, or part), the other placement stays ok, and the command
exits non-zero with one line until the copy is whole again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgharbor.backup.chunks import ChunkStore
from pgharbor.backup.manifest import BackupManifest
from pgharbor.storage import open_storage
from pgharbor.storage.layout import manifest_key
from tests.fixtures.backupkit import backup, setup
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import PgCluster

pytestmark = pytest.mark.integration


def _verify(harbor: Harbor, backup_id: str) -> tuple[dict[str, Any], str]:
    """The JSON result per placement, and the error line (empty when all are whole)."""
    proc = harbor.run("backup", "verify", "c1", backup_id, "--json", check=False)
    result = json.loads(proc.stdout)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("pgharbor: error:")]
    assert (proc.returncode == 0) == result["ok"] == (errors == []), proc
    return {p["target"]: p for p in result["placements"]}, (errors or [""])[0]


def _flip(path: Path, at: int) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    return data


def test_verify_finds_what_is_damaged_on_each_placement(
    harbor: Harbor, pg_cluster: PgCluster
) -> None:
    t1, t2 = setup(harbor, pg_cluster, "t1", "t2")
    b = backup(harbor)
    text = harbor.run("backup", "verify", "c1", b).stdout
    assert "t1: ok," in text and "t2: ok," in text
    m = BackupManifest.unseal((t1 / manifest_key("c1", b)).read_bytes())
    victim = next(f for f in m.files if f.type == "f" and f.size > 200_000)
    cid = m.chunkmap(lambda key: (t1 / key).read_bytes(), None).ids(victim.first_chunk + 1, 1)[0]
    store = ChunkStore(open_storage(f"file://{t1}"))
    store.load()
    loc = store.index[cid]
    store.close()

    pack = t1 / "chunks" / "packs" / loc.pack[:2] / loc.pack
    good = _flip(pack, loc.offset + loc.length // 2)
    found, line = _verify(harbor, b)
    assert found["t2"]["status"] == "ok" and found["t1"]["status"] == "incomplete"
    assert found["t1"]["corrupt"] == 1 and found["t1"]["missing"] == 0
    (bad,) = found["t1"]["bad"]
    assert bad["path"] == victim.path and bad["chunk"] == 1 and "corrupt" in bad["problem"]
    assert "not whole on t1" in line
    text = harbor.run("backup", "verify", "c1", b, check=False).stdout
    assert f"{victim.path} chunk 1 ({cid.hex()[:16]}…): corrupt" in text
    pack.write_bytes(good)

    packs2 = sorted((t2 / "chunks" / "packs").rglob("*/*"))
    hidden = packs2[0].with_name("moved-away")
    packs2[0].rename(hidden)
    found, line = _verify(harbor, b)
    assert found["t1"]["status"] == "ok" and found["t2"]["missing"] > 0
    assert found["t2"]["bad"] and packs2[0].name in found["t2"]["bad"][0]["problem"]
    assert "not whole on t2" in line
    hidden.rename(packs2[0])

    part = t1 / "c1" / "backups" / b / "chunkmap" / "000000"
    good = _flip(part, len(part.read_bytes()) - 10)
    found, line = _verify(harbor, b)
    assert found["t2"]["status"] == "ok" and found["t1"]["unchecked"] == m.chunk_count
    assert any("chunk map part 000000" in p for p in found["t1"]["problems"])
    part.write_bytes(good)

    found, line = _verify(harbor, b)
    assert line == "" and all(p["ok"] == p["chunks"] > 0 for p in found.values())
