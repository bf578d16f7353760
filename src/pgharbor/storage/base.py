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
- ``sweep(prefix, max_age)`` removes the leftovers of writes that can never finish
  (a writer killed mid-put): temporaries whose writer ran on this host and is gone,
  and any older than max_age seconds. A write in progress is never disturbed unless
  it is older than max_age. Returns how many it removed.
- ``durable()`` says whether a put is on stable storage when it returns (an SFTP server
  without fsync@openssh.com is not); ``space()`` is (total, free) bytes where the medium
  reports them, else None.
- Backend failures surface as StorageUnavailable (cannot reach), StoragePermissionDenied,
  or StorageError: never a library exception.
"""

from __future__ import annotations

import os

from pgharbor.errors import UsageError
from pgharbor.plain import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Final, Protocol
else:
    Protocol = object  # Storage is only used in annotations: typing stays unimported

TMP_MARK = ".pgharbor-tmp."
ABANDONED_AFTER = 3600.0  # a temporary this old belongs to a writer that is gone
# This host, as a temporary's name carries it: letters, digits and '_' only.
HOST = "".join(c if c.isascii() and c.isalnum() else "_" for c in os.uname().nodename)[:40]


class ObjectInfo(FrozenRecord):
    __slots__ = ("key", "size")
    key: Final[str]
    size: Final[int]

    def __init__(self, key: str, size: int) -> None:
        self.key = key
        self.size = size


class Storage(Protocol):
    url: str

    def put(self, key: str, data: bytes, *, overwrite: bool = True) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def sweep(self, prefix: str, max_age: float = ABANDONED_AFTER) -> int: ...

    def durable(self) -> bool: ...

    def space(self) -> tuple[int, int] | None: ...

    def close(self) -> None: ...


def tmp_name(name: str) -> str:
    """The temporary name a writer uses for the object called name (in the same folder):
    it says which host and process write it, so a sweep can tell an abandoned one."""
    return f"{TMP_MARK}{name}.{HOST}-{os.getpid()}-{os.urandom(4).hex()}"


def abandoned(tmp: str, age: float, max_age: float) -> bool:
    """True when the temporary tmp (a file name made by tmp_name, or an older form) can
    never become an object: its writer ran on this host and is no longer alive, or it is
    older than max_age seconds."""
    if age > max_age:
        return True
    host, _, rest = tmp.rpartition(".")[2].partition("-")
    pid = rest.partition("-")[0]
    if host != HOST or not pid.isdigit():
        return False
    return process_gone(int(pid))


def process_gone(pid: int) -> bool:
    """True when no process pid runs here: none exists, or only its zombie (a killed
    writer whose parent never reaps it, e.g. under a container's minimal init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b") ")[2][:1] == b"Z"
    except FileNotFoundError:
        return os.path.isdir("/proc/self")  # it just exited; or no /proc: trust kill()
    except OSError:
        return False


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


def plain_file_url(url: str) -> tuple[str, str] | None:
    """(netloc, path) of a file:// URL urllib.parse would split and unquote to exactly its
    own text: no %-escape, query, fragment, bracket, backslash, non-ASCII or control
    character. None for any other URL (the caller then uses urllib.parse): the hot path
    spares that import for the usual file URLs."""
    if not url.startswith("file://") or not (url.isascii() and url.isprintable()):
        return None
    if any(c in url for c in "%?#[]\\"):
        return None
    netloc, slash, path = url[len("file://") :].partition("/")
    return netloc, slash + path
