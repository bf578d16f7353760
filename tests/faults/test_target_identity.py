"""A copy counts only where the target's identity was checked, on real storage: a file
system that is not mounted takes no copy (PostgreSQL keeps its WAL until it is back), one
storage reached under two names or URL spellings is refused at `target add`, and an SFTP
server that cannot fsync is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgharbor.errors import StorageError
from pgharbor.storage import open_storage
from tests.fixtures.harbor import Harbor
from tests.fixtures.postgres import IS_ROOT, PgFactory, server_dir
from tests.fixtures.s3server import S3Server
from tests.fixtures.sshd import SSHDServer

pytestmark = pytest.mark.integration
needs_root = pytest.mark.skipif(not IS_ROOT, reason="bind mounts need root")


@pytest.fixture
def bind_mount(workdir: Path) -> Iterator[tuple[Path, Path]]:
    """(disk, mount point): disk's folder bind-mounted on the mount point."""
    disk, mnt = server_dir(workdir / "disk"), server_dir(workdir / "mnt")
    subprocess.run(["mount", "--bind", disk, mnt], check=True)
    try:
        yield disk, mnt
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


def _ls(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@needs_root
def test_an_unmounted_file_system_takes_no_copy(
    harbor: Harbor, pg_factory: PgFactory, bind_mount: tuple[Path, Path]
) -> None:
    disk, mnt = bind_mount
    harbor.run("target", "add", "t1", f"file://{mnt}")
    harbor.target("t2")
    pg = pg_factory()
    harbor.register(pg, "c1", "t1", "t2", required=2)
    harbor.archive_to(pg)
    pg.wait_for_archived(pg.switch_wal(), timeout=60)
    subprocess.run(["umount", mnt], check=True)  # the share is gone; its mount point stays
    assert _ls(mnt) == []
    pending = pg.switch_wal()
    pg.wait_until("archive failures", lambda: pg.archiver_stats()["failed_count"] > 0, 60, str)
    assert _ls(mnt) == []  # nothing was written into the bare mount point...
    assert (pg.pgdata / "pg_wal" / "archive_status" / f"{pending}.ready").exists()  # ...kept
    assert "cluster.json is missing" in pg.log_tail(200)
    line = harbor.fails("backup", "create", "c1", code=19)  # a backup takes no copy either
    assert "cluster.json is missing" in line
    assert _ls(mnt) == [] and harbor.json("backup", "list", "c1") == []
    subprocess.run(["mount", "--bind", disk, mnt], check=True)
    pg.wait_for_archived(pending, timeout=120)  # PostgreSQL's retry succeeds by itself
    assert any(p.name == pending for p in (mnt / "c1" / "wal").rglob("*"))


@needs_root
def test_one_storage_under_two_names_is_refused(
    harbor: Harbor, workdir: Path, bind_mount: tuple[Path, Path]
) -> None:
    _, mnt = bind_mount
    root = harbor.target("t1")
    link = workdir / "link"
    link.symlink_to(root)
    subprocess.run(["mount", "--bind", root, mnt], check=True)
    spellings = [
        f"file://{root}",
        f"file://{root}/",
        f"file://localhost{root}",
        f"file://{root}/../{root.name}",
        f"file://{link}",
        f"file://{mnt}",  # the same folder, bind-mounted elsewhere
    ]
    for i, url in enumerate(spellings):
        line = harbor.fails("target", "add", f"alias{i}", url)
        assert "same storage as target 't1'" in line, url
    assert [t["name"] for t in harbor.json("target", "list")] == ["t1"]
    subprocess.run(["umount", mnt], check=True)
    (mnt / "pgharbor-target.json").write_text((root / "pgharbor-target.json").read_text())
    line = harbor.fails("target", "add", "copied", f"file://{mnt}")  # a marker copied over
    assert "same storage as target 't1'" in line


def test_one_bucket_prefix_under_two_urls_is_refused(harbor: Harbor, s3_server: S3Server) -> None:
    harbor.env.update(s3_server.write_aws_files().env)
    bucket = s3_server.new_bucket("archive")
    harbor.run("target", "add", "s3", bucket.url)
    plain = s3_server.url_for(bucket.bucket, "")
    for i, prefix in enumerate(["archive/", "/archive", "archive//"]):
        url = plain.replace(f"{bucket.bucket}/?", f"{bucket.bucket}/{prefix}?")
        line = harbor.fails("target", "add", f"s3alias{i}", url)
        assert "same storage" in line, url
    harbor.run("target", "add", "s3other", s3_server.url_for(bucket.bucket, "other"))


@pytest.fixture(scope="module")
def sftp_without_fsync() -> Iterator[SSHDServer]:
    """An OpenSSH sftp server that refuses fsync@openssh.com."""
    base = Path(tempfile.mkdtemp(prefix="pgharbor-sshd-nofsync-"))  # the login user reads it
    server = SSHDServer(base, sftp_args="-P fsync")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_an_sftp_server_that_cannot_fsync_takes_no_copy(sftp_without_fsync: SSHDServer) -> None:
    storage = open_storage(sftp_without_fsync.make_root_url())
    with pytest.raises(StorageError, match=r"fsync@openssh\.com"):
        storage.put("c1/wal/0000000100000000/000000010000000000000001", b"data")
    root = Path(str(getattr(storage, "root")))  # noqa: B009 - the server's folder, here
    assert [p.name for p in root.rglob("*") if p.is_file()] == []  # no temporary left either
    assert os.path.isdir(root)
