"""file:// backend: a local disk or an NFS mount.

Writes go to a temporary name in the destination folder, are fsynced, then renamed
(or hard-linked, when overwriting is not allowed, so an existing object can never be
replaced), and the folder is fsynced so the new name itself is durable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from pgharbor.errors import (
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
)
from pgharbor.plain import tidy_path
from pgharbor.storage.base import (
    ABANDONED_AFTER,
    TMP_MARK,
    ObjectInfo,
    abandoned,
    check_key,
    plain_file_url,
    tmp_name,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


def _url_path(url: str) -> str:
    plain = plain_file_url(url)
    if plain is not None:
        return plain[1]
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStorage:
    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        # timeout: accepted for a uniform interface; local and NFS I/O has no timeout.
        # Durability cannot be turned off: every put is fsynced, file and folder.
        self.url = url
        self.root = tidy_path(_url_path(url))  # a string: pathlib costs the hot path

    def __repr__(self) -> str:
        return f"FileStorage({self.url!r})"

    def _path(self, key: str) -> str:
        return os.path.join(self.root, check_key(key))

    def _error(self, exc: OSError, key: str) -> StorageError:
        where = f"{self.url} ({key})"
        if isinstance(exc, FileNotFoundError):
            if not os.path.isdir(self.root):  # not "no such object": no storage at all
                return StorageUnavailable(f"{self.url}: target root {self.root} does not exist")
            return ObjectNotFound(f"{where}: no such object")
        if isinstance(exc, PermissionError):
            return StoragePermissionDenied(f"{where}: permission denied")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(f"{where}: no space left on the target")
        if exc.errno in (errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.EROFS):
            return StorageUnavailable(f"{where}: {exc.strerror}")
        return StorageError(f"{where}: {exc.strerror or exc}")

    def _makedirs(self, folder: str) -> None:
        missing: list[str] = []
        p = folder
        while not os.path.exists(p):
            missing.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        if missing and not os.path.exists(self.root):
            raise StorageUnavailable(f"{self.url}: target root {self.root} does not exist")
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                continue
            fsync_dir(os.path.dirname(d))

    def put(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        path = self._path(key)
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, tmp_name(name))
        try:
            self._makedirs(folder)
            if not overwrite and os.path.exists(path):
                raise ObjectExists(f"{self.url} ({key}): object exists")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(f"{self.url} ({key}): object exists") from None
                finally:
                    os.unlink(tmp)
            fsync_dir(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._error(exc, key) from exc

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except IsADirectoryError:
            raise ObjectNotFound(f"{self.url} ({key}): no such object") from None
        except OSError as exc:
            raise self._error(exc, key) from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(length)
        except OSError as exc:
            raise self._error(exc, key) from exc

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            if not os.path.isdir(self.root):
                raise StorageUnavailable(
                    f"{self.url}: target root {self.root} does not exist"
                ) from None
            return None
        except OSError as exc:
            raise self._error(exc, key) from exc
        return ObjectInfo(key, st.st_size)

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def _walk(self, prefix: str) -> Iterator[tuple[str, str, str]]:
        """(folder path, folder relative to the root, file name) for every file in the
        folders that can hold keys starting with prefix, temporaries included."""
        if not os.path.isdir(self.root):
            raise StorageUnavailable(f"{self.url}: target root {self.root} does not exist")
        folder = prefix.rpartition("/")[0]  # walk only the folder that can hold prefix
        start = os.path.join(self.root, folder) if folder else self.root
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames.sort()
                rel = os.path.relpath(dirpath, self.root)
                for fn in filenames:
                    yield dirpath, "" if rel == "." else rel, fn
        except OSError as exc:
            raise self._error(exc, prefix) from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        found: list[ObjectInfo] = []
        try:
            for dirpath, rel, fn in self._walk(prefix):
                key = f"{rel}/{fn}" if rel else fn
                if not fn.startswith(TMP_MARK) and key.startswith(prefix):
                    try:
                        size = os.stat(os.path.join(dirpath, fn)).st_size
                    except FileNotFoundError:
                        continue  # deleted while listed: as if listed a moment later
                    found.append(ObjectInfo(key, size))
        except OSError as exc:
            raise self._error(exc, prefix) from exc
        found.sort(key=lambda o: o.key)
        return iter(found)

    def sweep(self, prefix: str, max_age: float = ABANDONED_AFTER) -> int:
        now, removed = time.time(), 0
        for dirpath, rel, fn in list(self._walk(prefix)):
            key = f"{rel}/{fn[len(TMP_MARK) :]}" if rel else fn[len(TMP_MARK) :]
            if not fn.startswith(TMP_MARK) or not key.startswith(prefix):
                continue
            path = os.path.join(dirpath, fn)
            try:
                if abandoned(fn, now - os.stat(path).st_mtime, max_age):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue  # its writer finished or another sweep took it
            except OSError as exc:
                raise self._error(exc, key) from exc
        return removed

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error(exc, key) from exc

    def durable(self) -> bool:
        return True  # every put fsyncs the file and its folder

    def space(self) -> tuple[int, int] | None:
        try:
            st = os.statvfs(self.root)
        except OSError as exc:
            raise self._error(exc, "") from exc
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def close(self) -> None:
        return None
