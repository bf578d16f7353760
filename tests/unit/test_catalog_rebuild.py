"""catalog rebuild from file:// targets in temporary folders (no server): a lost
catalog's targets, cluster, placements, WAL copies and backups come back exactly as the
targets describe them; a damaged object is skipped and reported, never invented; every
refusal (a catalog that is not empty, a URL that is not a target, descriptors that
disagree, one target given twice) comes before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgharbor import crypto
from pgharbor.archive.push import push
from pgharbor.backup.manifest import BackupManifest
from pgharbor.catalog.backups import BackupRepo
from pgharbor.catalog.repo import Catalog
from pgharbor.errors import Conflict, UsageError
from pgharbor.services import Services, clusters, placements, targets
from pgharbor.services.rebuild import RebuildResult, rebuild
from pgharbor.settings import Settings, load_settings
from pgharbor.storage.factory import open_storage
from pgharbor.storage.layout import manifest_key, part_key, ref_key
from tests.fixtures.catalogs import SYSID, add_test_cluster, init_catalog
from tests.fixtures.walgen import history, segment

SEGS = [f"00000001000000000000000{i}" for i in range(1, 5)]


class Fleet:
    """A catalog with targets t1 and t2 (file://), cluster c1 shipping to both, WAL
    pushed and one finished backup's objects on both targets."""

    def __init__(self, tmp: Path, **cluster_options: Any) -> None:
        self.tmp = tmp
        self.url = f"sqlite:///{tmp}/catalog.db"
        self.cat: Catalog = init_catalog(self.url)
        self.settings: Settings = load_settings(
            catalog=self.url, env={"PGHARBOR_STATE_DIR": str(tmp / "state")}
        ).replace(**cluster_options)
        self.svc = Services(self.settings)
        self.roots = [tmp / "t1", tmp / "t2"]
        for i, root in enumerate(self.roots, 1):
            root.mkdir()
            targets.add(self.svc, f"t{i}", f"file://{root}")
        add_test_cluster(self.cat)
        placements.add(self.svc, "c1", "t1", 1)
        placements.add(self.svc, "c1", "t2", 2)
        (tmp / "pg_wal").mkdir()

    def push(self, name: str, data: bytes | None = None) -> None:
        path = self.tmp / "pg_wal" / name
        path.write_bytes(data if data is not None else segment(name, SYSID))
        push(self.settings, "c1", str(path))

    def backup(self, backup_id: str, *, ref: bool = True) -> BackupManifest:
        """A finished backup's own objects (manifest, a chunk map part, its ref)."""
        c = self.cat.cluster("c1")
        m = BackupManifest(
            id=backup_id,
            cluster="c1",
            cluster_id=c.id,
            system_identifier=c.system_identifier,
            label=f"pgharbor {backup_id}",
            pg_version_num=150018,
            chunk_size=65536,
            timeline=1,
            start_lsn="0/2000028",
            stop_lsn="0/2000138",
            start_time="2026-12-01T10:00:00+00:00",
            stop_time="2026-12-01T10:00:05+00:00",
            stop_xmin=745,
            wal_start=SEGS[1],
            wal_stop=SEGS[1],
            logical_bytes=12345,
        )
        for root in self.roots:
            s = open_storage(f"file://{root}")
            s.put(part_key("c1", backup_id, 0), b"x" * 100)
            s.put(manifest_key("c1", backup_id), m.seal())
            if ref:
                s.put(ref_key("c1", backup_id), backup_id.encode())
        repo = BackupRepo(self.cat)
        repo.begin(backup_id, c.id, m.label, [t.id for t in self.cat.targets()], "h", 1)
        return m

    def rebuild(self, *urls: str, name: str = "new.db") -> tuple[Services, RebuildResult]:
        url = f"sqlite:///{self.tmp}/{name}"
        svc = Services(self.settings.replace(catalog=url))
        found = urls or tuple(f"file://{r}" for r in reversed(self.roots))
        return svc, rebuild(svc, list(found), restore_points=False)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def _copies(cat: Catalog) -> set[tuple[Any, ...]]:
    return {
        (f.name, f.timeline, f.size, f.checksum, c.target, c.status, c.stored_size)
        for f in cat.wal_files("c1")
        for c in f.copies
    }


def test_rebuild_gives_back_the_fleet_and_every_copy(fleet: Fleet) -> None:
    for name in SEGS:
        fleet.push(name)
    fleet.push("00000002.history", history())
    clusters.set_options(fleet.svc, "c1", required_copies=2, archive_async=True)
    m = fleet.backup("20261201T100000-aaaa")
    fleet.backup("20261201T110000-bbbb", ref=False)  # a manifest without its ref
    svc, r = fleet.rebuild()  # t2 first: priorities follow the order given

    assert (r.targets, r.clusters, r.placements) == (["t2", "t1"], ["c1"], 2)
    assert (r.wal_copies, r.backups, r.backup_copies) == (10, 1, 2)
    assert r.skipped == 2 and not r.ok  # the backup without a ref, on each target
    assert all("without its ref" in p for p in r.problems), r.problems
    assert r.needs_dsn == ["c1"]
    new = svc.catalog
    assert {(t.id, t.name) for t in new.targets()} == {(t.id, t.name) for t in fleet.cat.targets()}
    old_c, new_c = fleet.cat.cluster("c1"), new.cluster("c1")
    same = ("id", "system_identifier", "wal_segment_size", "version", "version_num", "idc")
    assert all(getattr(old_c, k) == getattr(new_c, k) for k in same)
    assert (new_c.required_copies, new_c.archive_async, new_c.host, new_c.port) == (
        2,
        True,
        "db1.example",
        5432,
    )
    assert new_c.dsn == ""  # never on a target
    assert [(p.target, p.priority) for p in new.placements("c1")] == [("t2", 1), ("t1", 2)]
    assert _copies(new) == _copies(fleet.cat)  # the same rows, checksums and sizes
    (b,) = BackupRepo(new).for_cluster("c1")
    assert (b.id, b.status, b.start_lsn, b.stop_lsn, b.wal_start, b.stop_xmin) == (
        m.id,
        "ok",
        m.start_lsn,
        m.stop_lsn,
        m.wal_start,
        745,
    )
    assert b.targets == ["t1", "t2"] and b.logical_bytes == 12345


def test_a_damaged_object_is_skipped_and_reported_never_invented(fleet: Fleet) -> None:
    for name in SEGS:
        fleet.push(name)
    bad = fleet.roots[1] / "c1" / "wal" / SEGS[2][:16] / SEGS[2]
    bad.write_bytes(b"not an envelope at all")
    foreign = fleet.roots[1] / "c1" / "wal" / SEGS[3][:16] / SEGS[3]
    doc = foreign.read_bytes()
    foreign.write_bytes(doc.replace(str(SYSID).encode(), b"7310000000000000999"))
    svc, r = fleet.rebuild()
    assert r.skipped == 2 and not r.ok and r.wal_copies == 6
    assert any(SEGS[2] in p and "bad magic" in p for p in r.problems), r.problems
    assert any(SEGS[3] in p and "belongs to system 7310000000000000999" in p for p in r.problems)
    on_t2 = {f.name for f in svc.catalog.wal_files("c1") for c in f.copies if c.target == "t2"}
    assert on_t2 == set(SEGS[:2])


def test_encrypted_objects_without_a_key_are_counted_and_named(tmp_path: Path) -> None:
    key = tmp_path / "c1.key"
    crypto.generate_key_file(key)
    fleet = Fleet(tmp_path, clusters={"c1": {"encryption_key_file": str(key)}})
    for name in SEGS[:2]:
        fleet.push(name)
    svc, r = fleet.rebuild()  # with the key: the checksums come from inside
    assert r.ok and _copies(svc.catalog) == _copies(fleet.cat)
    fleet.settings = fleet.settings.replace(clusters={})
    _, r = fleet.rebuild(name="nokey.db")
    assert r.wal_copies == 0 and r.skipped == 4
    assert any("no encryption key is configured for cluster 'c1'" in p for p in r.problems)


def test_refused_into_a_catalog_that_is_not_empty(fleet: Fleet) -> None:
    with pytest.raises(Conflict, match="catalog is not empty"):
        rebuild(fleet.svc, [f"file://{fleet.roots[0]}"])


def test_refused_for_a_url_that_is_not_a_target(fleet: Fleet, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="is not a pgharbor target"):
        fleet.rebuild(f"file://{fleet.roots[0]}", f"file://{empty}")
    svc, _ = _empty(fleet)
    assert svc.catalog.targets() == []  # nothing written


def test_refused_when_descriptors_disagree(fleet: Fleet) -> None:
    claim = fleet.roots[1] / "c1" / "cluster.json"
    claim.write_text(json.dumps({**json.loads(claim.read_text()), "system_identifier": "42"}))
    with pytest.raises(Conflict, match=r"disagree \(system_identifier"):
        fleet.rebuild()
    svc, _ = _empty(fleet)
    assert svc.catalog.targets() == [] and svc.catalog.clusters() == []


def test_refused_for_one_target_twice_or_two_targets_of_one_name(fleet: Fleet) -> None:
    t1 = f"file://{fleet.roots[0]}"
    with pytest.raises(Conflict, match="are the same target"):
        fleet.rebuild(t1, t1 + "/")
    marker = fleet.roots[1] / "pgharbor-target.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "name": "t1"}))
    with pytest.raises(Conflict, match="two targets named 't1'"):
        fleet.rebuild(name="other.db")


def test_an_older_descriptor_is_read_with_defaults(fleet: Fleet) -> None:
    for root in fleet.roots:
        claim = root / "c1" / "cluster.json"
        doc = json.loads(claim.read_text())
        keep = ("format", "cluster_id", "name", "system_identifier", "wal_segment_size")
        claim.write_text(json.dumps({k: doc[k] for k in (*keep, "version", "target_id")}))
    svc, r = fleet.rebuild()
    c = svc.catalog.cluster("c1")
    assert r.ok and (c.version_num, c.required_copies, c.idc) == (150018, 1, "")
    assert c.host.startswith("unknown-")  # until cluster set --dsn
    assert any("host not known" in n for n in r.notes)


def _empty(fleet: Fleet) -> tuple[Services, None]:
    svc = Services(fleet.settings.replace(catalog=f"sqlite:///{fleet.tmp}/new.db"))
    return svc, None
