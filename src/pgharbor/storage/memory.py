"""memory:// backend for unit tests: objects live in a process-wide dict per URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from pgharbor.errors import ObjectExists, ObjectNotFound
from pgharbor.storage.base import ObjectInfo, check_key

_STORES: dict[str, dict[str, bytes]] = {}
_LOCK = threading.Lock()


class MemoryStorage:
    def __init__(self, url: str) -> None:
        self.url = url
        with _LOCK:
            self._objects = _STORES.setdefault(url, {})

    def put(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        check_key(key)
        with _LOCK:
            if not overwrite and key in self._objects:
                raise ObjectExists(f"{self.url} ({key}): object exists")
            self._objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFound(f"{self.url} ({key}): no such object") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get(key)[start : start + length]

    def stat(self, key: str) -> ObjectInfo | None:
        check_key(key)
        data = self._objects.get(key)
        return None if data is None else ObjectInfo(key, len(data))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with _LOCK:
            items = sorted((k, len(v)) for k, v in self._objects.items() if k.startswith(prefix))
        return iter([ObjectInfo(k, n) for k, n in items])

    def delete(self, key: str) -> None:
        check_key(key)
        with _LOCK:
            self._objects.pop(key, None)

    def sweep(self, prefix: str, max_age: float = 0.0) -> int:
        return 0  # a put is one dict assignment: nothing is ever left half-written

    def durable(self) -> bool:
        return False  # gone with the process

    def space(self) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        return None

    @staticmethod
    def reset() -> None:
        with _LOCK:
            _STORES.clear()
