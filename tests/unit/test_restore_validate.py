"""What a restore accepts from a manifest (restore/validate.py), and writing below a folder
without leaving it (restore/place.py): table-driven, on a real temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgharbor.backup.manifest import BackupManifest, FileEntry, TablespaceEntry
from pgharbor.errors import IntegrityError, UsageError
from pgharbor.restore.place import Root
from pgharbor.restore.validate import check_locations, check_manifest, tablespace_locations

CHUNK = 65536


def _manifest(
    files: list[FileEntry], spaces: list[TablespaceEntry] | None = None
) -> BackupManifest:
    base = [
        FileEntry("backup_label", "f", 0o600, 0),
        FileEntry("PG_VERSION", "f", 0o600, 3, first_chunk=0),
        FileEntry("global", "d", 0o700),
        FileEntry("global/pg_control", "f", 0o600, 8192, first_chunk=1),
        FileEntry("pg_wal", "d", 0o700),
        FileEntry("./pg_wal/archive_status", "d", 0o700),  # as PostgreSQL's tar names it
        FileEntry("pg_tblspc", "d", 0o700),
    ]
    return BackupManifest(
        "b1",
        "c1",
        "id",
        "1",
        "label",
        150000,
        CHUNK,
        chunk_count=4,
        files=base + files,
        tablespaces=spaces or [],
    )


def test_a_normal_manifest_is_accepted_in_normal_form() -> None:
    space = TablespaceEntry(
        "16400",
        "/srv/ts",
        [FileEntry("PG_15_202209061", "d", 0o700), FileEntry("PG_15_202209061/5", "d", 0o750)],
    )
    m = check_manifest(
        _manifest([FileEntry("pg_tblspc/16400", "l", 0o777, link="/srv/ts")], [space])
    )
    assert "pg_wal/archive_status" in [f.path for f in m.files]
    assert [f.path for f in m.tablespaces[0].files][-1] == "PG_15_202209061/5"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (FileEntry("../outside", "f", 0o600), "not a normal relative path"),
        (FileEntry("base/../../x", "f", 0o600), "not a normal relative path"),
        (FileEntry("/etc/passwd", "f", 0o600), "is absolute"),
        (FileEntry("a//b", "f", 0o600), "not a normal relative path"),
        (FileEntry("global/./x", "f", 0o600), "not a normal relative path"),
        (FileEntry("x\0y", "f", 0o600), "NUL"),
        (FileEntry("", "f", 0o600), "not a relative path"),
        (FileEntry("evil", "l", 0o777, link="/outside"), "is a symlink"),
        (FileEntry("pg_tblspc/99", "l", 0o777, link="/outside"), "is a symlink"),
        (FileEntry("dev", "c", 0o600), "type 'c'"),
        (FileEntry("global/x", "d", 0o4700), "setuid"),
        (FileEntry("global/y", "f", 0o2600), "setuid, setgid"),
        (FileEntry("global/z", "d", 0o1777), "sticky"),
        (FileEntry("global/w", "f", 0o606), "world-writable"),
        (FileEntry("nowhere/f", "f", 0o600), "not below a directory listed before it"),
        (FileEntry("global/pg_control", "f", 0o600, 10, first_chunk=3), "listed twice"),
        (FileEntry("huge", "f", 0o600, 1 << 50, first_chunk=2), "beyond the backup's chunk map"),
        (FileEntry("neg", "f", 0o600, 10, first_chunk=-1), "beyond the backup's chunk map"),
        (FileEntry("recovery.signal", "f", 0o600), "written by the restore"),
        (FileEntry("postmaster.pid", "f", 0o600), "written by the restore"),
        (FileEntry("x" * 300, "f", 0o600), "too long"),
        (FileEntry("sized_dir", "d", 0o700, 10), "not a file but has a size"),
        (FileEntry("typed", "f", "0600"), "has mode"),  # type: ignore[arg-type]
    ],
)
def test_hostile_entries_are_refused_naming_the_first(entry: FileEntry, reason: str) -> None:
    with pytest.raises(IntegrityError, match=reason) as info:
        check_manifest(_manifest([entry, FileEntry("../second", "f", 0o600)]))
    assert "nothing was written" in str(info.value)
    assert "second" not in str(info.value)


def test_files_sharing_chunks_are_refused() -> None:
    with pytest.raises(IntegrityError, match="'shared' shares chunks"):
        check_manifest(_manifest([FileEntry("shared", "f", 0o600, 10, first_chunk=1)]))


def test_below_a_symlink_is_refused() -> None:
    space = TablespaceEntry("16400", "/srv/ts", [])
    m = _manifest(
        [FileEntry("pg_tblspc/16400", "l", 0o777), FileEntry("pg_tblspc/16400/f", "f", 0o600)],
        [space],
    )
    with pytest.raises(IntegrityError, match="below a symlink"):
        check_manifest(m)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (FileEntry("PG_15_1/x", "l", 0o777), "is a symlink"),
        (FileEntry("authorized_keys", "f", 0o600), "PG_<version>_<catalog version>"),
    ],
)
def test_tablespace_trees(entry: FileEntry, reason: str) -> None:
    space = TablespaceEntry("16400", "/srv/ts", [FileEntry("PG_15_1", "d", 0o700), entry])
    with pytest.raises(IntegrityError, match=reason):
        check_manifest(_manifest([], [space]))


def test_bad_tablespace_oid() -> None:
    with pytest.raises(IntegrityError, match="tablespace oid"):
        check_manifest(_manifest([], [TablespaceEntry("../1", "/srv/ts", [])]))


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("relative/ts", "absolute, normal"),
        ("/srv/../etc", "absolute, normal"),
        ("/data/pg/base", "overlaps the data directory"),
        ("/data", "overlaps the data directory"),
    ],
)
def test_locations(location: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        check_locations(Path("/data/pg"), {"1": Path(location)})
    with pytest.raises(UsageError, match="overlaps tablespace"):
        check_locations(Path("/data/pg"), {"1": Path("/srv/a"), "2": Path("/srv/a/b")})


def test_non_empty_tablespace_folders(tmp_path: Path) -> None:
    pgdata = tmp_path / "data"
    (pgdata / "pg_tblspc").mkdir(parents=True)
    used, other = tmp_path / "used", tmp_path / "other"
    (used / "PG_15_1").mkdir(parents=True)
    other.mkdir()
    (other / ".ssh").touch()
    (pgdata / "pg_tblspc" / "1").symlink_to(used)
    m = _manifest([], [TablespaceEntry("1", str(used), []), TablespaceEntry("2", str(other), [])])
    with pytest.raises(UsageError, match=f"{used} is not empty") as info:
        tablespace_locations(m, {}, pgdata, delta=False)
    assert "or use --delta" in info.value.message
    with pytest.raises(UsageError, match=f"{other} is not empty and .*pg_tblspc/2 does not"):
        tablespace_locations(m, {}, pgdata, delta=True)  # 1 is the one in use: fine
    where = tablespace_locations(m, {str(other): str(other)}, pgdata, delta=True)
    assert where == {"1": used, "2": other}  # named by --tablespace-map: the operator's choice
    with pytest.raises(UsageError, match="names no tablespace"):
        tablespace_locations(m, {"/nope": "/x"}, pgdata, delta=True)


def test_root_never_follows_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    data = tmp_path / "data"
    data.mkdir()
    (data / "postgresql.conf").symlink_to(outside / "victim")
    (data / "pg_wal").symlink_to(outside)
    (data / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(data / "fifo")
    with Root(data) as root:
        assert root.kind("pg_wal/victim") is None  # not reachable: pg_wal is a symlink
        root.write_file("postgresql.conf", b"new")
        root.make_dir("pg_wal", 0o700)
        fd, existed = root.open_file("fifo", reuse=True)
        os.close(fd)
        assert not existed
        notes = root.notes
    assert (outside / "victim").read_text() == "keep" and sorted(os.listdir(outside)) == ["victim"]
    assert (data / "postgresql.conf").read_text() == "new"
    assert (data / "pg_wal").is_dir() and not (data / "pg_wal").is_symlink()
    assert (data / "fifo").is_file()
    assert len(notes) == 2 and all("was a symlink" in n for n in notes)


def test_prune_keeps_what_is_listed_and_stays_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "000000010000000000000001").write_text("stale")
    data = tmp_path / "data"
    (data / "base").mkdir(parents=True)
    (data / "base" / "1").write_text("kept")
    (data / "base" / "junk").write_text("x")
    (data / "pg_xact").symlink_to(outside)
    (data / "PG_VERSION").mkdir()  # a folder where the backup has a file
    keep = {"base": "d", "base/1": "f", "pg_xact": "d", "PG_VERSION": "f"}
    with Root(data) as root:
        assert root.prune(keep) == 3
    assert sorted(os.listdir(data)) == ["base"] and os.listdir(data / "base") == ["1"]
    assert (outside / "000000010000000000000001").read_text() == "stale"


def test_many_folders_outgrow_the_descriptor_cache(tmp_path: Path) -> None:
    keep = {}
    with Root(tmp_path / "data") as root:
        for i in range(150):
            root.make_dir(f"d{i}", 0o700)
            root.make_dir(f"d{i}/sub", 0o750)
            fd, _ = root.open_file(f"d{i}/sub/f", reuse=False)
            os.close(fd)
            keep.update({f"d{i}": "d", f"d{i}/sub": "d"})
        root.rename("d0/sub/f", "d149/sub/g")
        keep["d149/sub/g"] = "f"
        assert root.prune(keep) == 149  # every f: d0's was renamed to the g kept
        assert len(root._dirs) <= 64
    assert (tmp_path / "data" / "d149" / "sub" / "g").is_file()
    assert oct((tmp_path / "data" / "d7" / "sub").stat().st_mode & 0o777) == "0o750"
