"""Cheap stand-ins for what dataclasses and pathlib give, for the archive hot path.

wal push and wal fetch run as a new process per WAL segment, where importing dataclasses
(it pulls inspect and ast) or pathlib (it pulls fnmatch and re) is a large share of the
run. Value classes there derive from Record instead, and paths are strings (os.path).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Self


class Record:
    """A small value class as a dataclass would make it: the fields are ``__slots__``, in
    declaration order (hence ``noqa: RUF023``); instances of the same class with equal
    fields are equal; repr shows the fields. A subclass that was a frozen dataclass
    derives from FrozenRecord (hashable; its fields ``Final`` for mypy)."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record) and other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__qualname__}({fields})"

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self, **changes: object) -> Self:
        """A copy with ``changes`` applied (as dataclasses.replace)."""
        return type(self)(**{**self.as_dict(), **changes})


class FrozenRecord(Record):
    """A Record whose fields are not changed after __init__, hence hashable."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._values())


def tidy_path(path: str) -> str:
    """``str(pathlib.PurePosixPath(path))``: no empty or "." parts, no trailing slash
    ("..", which may cross a symlink, stays)."""
    head = "/" if path.startswith("/") else ""
    if path.startswith("//") and not path.startswith("///"):
        head = "//"  # POSIX leaves a leading "//" to the system, and so does pathlib
    return head + "/".join(p for p in path.split("/") if p and p != ".") or "."


def absolute_path(path: str) -> str:
    """``str(pathlib.Path(path).absolute())``: relative to the working folder, tidied,
    symlinks and ".." kept."""
    return tidy_path(os.path.join(os.getcwd(), path))
