"""The storage interface every backend implements.

Keys are relative, '/'-separated paths below the target's root. Contract (tested for
every backend in tests/contract):

- ``put`` is atomic (no reader ever sees a partial object under its final name, even
  after the writer is killed) and durable (on stable storage before it returns).
  With ``overwrite=False`` an existing object is never replaced: ObjectExists is raised.
- ``get``/``get_range`` raise ObjectNotFound for a missing key.
- ``list(prefix)`` yields every object whose key starts with prefix, sorted by key,
  and never temporary objects of writes in progress.
- ``delete`` of a missing key is not an error.
- Backend failures surface as StorageUnavailable (cannot reach), StoragePermissionDenied,
  or StorageError: never a library exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from pgharbor.errors import UsageError

TMP_MARK = ".pgharbor-tmp."


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Storage(Protocol):
    url: str

    def put(self, key: str, data: bytes, *, overwrite: bool = True) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...


def check_key(key: str) -> str:
    """Refuse keys that could escape the target root or collide with temporary objects."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in key
        or "\0" in key
        or any(p.startswith(TMP_MARK) for p in parts)
    ):
        raise UsageError(f"invalid storage key {key!r}")
    return key
