"""Writing below one folder without ever leaving it.

A restore writes into the data directory and the tablespace folders only. Each is opened
once; every path below it is reached one component at a time from that descriptor
(``dir_fd``), opening each folder with ``O_NOFOLLOW``, so a symlink planted in the tree
(``postgresql.conf -> /etc/...``, ``pg_wal -> /elsewhere``) is never followed: where the
backup has a file or folder and the tree holds something else (a symlink, a folder for a
file, a device), that thing is removed — a symlink itself, never what it points to — and
the restore says so. Files are created with ``O_EXCL`` and small ones replaced by a
rename, which replaces a symlink rather than writing through it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHE = 64  # open folder descriptors kept


class Root:
    def __init__(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.notes: list[str] = []
        self._dirs: dict[str, int] = {}

    def close(self) -> None:
        self._forget()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reaching a path --------------------------------------------------------
    def _forget(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def dir_fd(self, rel: str) -> int:
        """An open descriptor of folder ``rel`` ("" is the root), reached without following
        any symlink (OSError ELOOP or ENOTDIR otherwise)."""
        if not rel:
            return self.fd
        fd = self._dirs.get(rel)
        if fd is None:
            head, _, name = rel.rpartition("/")
            fd = os.open(name, _DIR, dir_fd=self.dir_fd(head))
            if len(self._dirs) >= _CACHE:
                self._forget()
            self._dirs[rel] = fd
        return fd

    def _parent(self, rel: str) -> tuple[int, str]:
        head, _, name = rel.rpartition("/")
        return self.dir_fd(head), name

    def kind(self, rel: str) -> str | None:
        """ "f", "d", "l" or "other" (device, fifo, socket) for what is at ``rel`` (never
        following a symlink); None when nothing is."""
        try:
            parent, name = self._parent(rel)
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a folder on the way is a symlink: not reachable
                return None
            raise
        return _kind(st.st_mode)

    def show(self, rel: str) -> str:
        return str(self.path / rel)

    @contextmanager
    def at(self, rel: str) -> Iterator[None]:
        """OSErrors inside name the whole path (operations relative to a descriptor
        report only the last component)."""
        try:
            yield
        except OSError as exc:
            if exc.errno is None or str(exc.filename).startswith(f"{self.path}/"):
                raise
            raise OSError(exc.errno, exc.strerror, self.show(rel)) from None

    # -- changing the tree ------------------------------------------------------
    def remove(self, rel: str) -> str | None:
        """Remove whatever is at ``rel`` (a folder with its contents, a symlink itself);
        returns what it was."""
        with self.at(rel):
            k = self.kind(rel)
            if k is None:
                return None
            if k == "d":
                self._forget()  # cached descriptors below it would outlive it
            parent, name = self._parent(rel)
            if k == "d":
                shutil.rmtree(name, dir_fd=parent)  # descriptor-based: follows no symlink
            else:
                if k == "l":
                    self.notes.append(
                        f"{self.show(rel)} was a symlink to {os.readlink(name, dir_fd=parent)}: "
                        "removed (what it pointed to is untouched)"
                    )
                os.unlink(name, dir_fd=parent)
            return k

    def make_dir(self, rel: str, mode: int) -> None:
        """A real folder at ``rel`` with ``mode`` (what else is there is removed)."""
        with self.at(rel):
            k = self.kind(rel)
            if k != "d":
                self.remove(rel)
                parent, name = self._parent(rel)
                os.mkdir(name, 0o700, dir_fd=parent)
            os.fchmod(self.dir_fd(rel), mode)

    def open_file(self, rel: str, *, reuse: bool) -> tuple[int, bool]:
        """A descriptor of a regular file at ``rel`` open for reading and writing, and
        whether it existed (only with ``reuse``); anything else there is removed first."""
        with self.at(rel):
            k = self.kind(rel)
            parent, name = self._parent(rel)
            if k == "f" and reuse:
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    return fd, True
                os.close(fd)  # replaced meanwhile: start again
            if k is not None:
                self.remove(rel)
                parent, name = self._parent(rel)
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, 0o600, dir_fd=parent), False

    def write_file(self, rel: str, data: bytes, mode: int = 0o600) -> None:
        """``rel`` holds ``data``: written to a temporary name, synced, renamed over it."""
        with self.at(rel):
            head, _, name = rel.rpartition("/")
            tmp = f"{name}.pgharbor-tmp"
            self.remove(f"{head}/{tmp}" if head else tmp)
            parent = self.dir_fd(head)
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=parent
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.kind(rel) in ("d", "l", "other"):
                self.remove(rel)
                parent, name = self._parent(rel)
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)

    def read_file(self, rel: str) -> bytes | None:
        """The contents of regular file ``rel``; None when there is none (or not a file)."""
        with self.at(rel):
            if self.kind(rel) != "f":
                return None
            parent, name = self._parent(rel)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            with os.fdopen(fd, "rb") as f:
                return f.read()

    def symlink(self, rel: str, target: str) -> None:
        """A symlink at ``rel`` to ``target`` (replacing what is there)."""
        with self.at(rel):
            k = self.kind(rel)
            if k is not None and k != "l":
                self.remove(rel)
            parent, name = self._parent(rel)
            if k == "l":
                os.unlink(name, dir_fd=parent)  # the one it replaces: no note
            os.symlink(target, name, dir_fd=parent)

    def rename(self, src: str, dst: str) -> None:
        with self.at(dst):
            sp, sn = self._parent(src)
            sp = os.dup(sp)  # reaching dst may evict it from the cache
            try:
                dp, dn = self._parent(dst)
                os.rename(sn, dn, src_dir_fd=sp, dst_dir_fd=dp)
            finally:
                os.close(sp)

    def sync_dir(self, rel: str = "") -> None:
        with self.at(rel):
            os.fsync(self.dir_fd(rel))

    def prune(self, keep: dict[str, str], top: str = "") -> int:
        """Remove everything below ``top`` that ``keep`` (path: type) does not list with
        the type it has; never descends through a symlink. Returns how many were removed."""
        removed = 0
        with os.scandir(self.dir_fd(top)) as it:
            names = sorted(e.name for e in it)
        for name in names:
            rel = f"{top}/{name}" if top else name
            k = self.kind(rel)
            if k is not None and keep.get(rel) == k:
                if k == "d":
                    removed += self.prune(keep, rel)
                continue
            self.remove(rel)
            removed += 1
        return removed


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISDIR(mode):
        return "d"
    return "f" if stat.S_ISREG(mode) else "other"
