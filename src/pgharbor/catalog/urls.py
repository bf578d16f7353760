"""Catalog URL forms, shared by the SQLAlchemy catalog and the lean hot-path access.

Accepted: ``sqlite:////abs/path.db``, ``sqlite:///rel/path.db``, a bare file path
(SQLite), ``postgresql://…`` / ``postgres://…`` / ``postgresql+psycopg://…``.
"""

from __future__ import annotations

from pgharbor.errors import ConfigError
from pgharbor.plain import FrozenRecord, absolute_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final


class CatalogURL(FrozenRecord):
    __slots__ = ("kind", "path", "conninfo")  # noqa: RUF023
    kind: Final[str]  # "sqlite" | "postgresql"
    path: Final[str | None]  # sqlite: absolute (as pathlib's absolute() spells it)
    conninfo: Final[str]  # postgresql, libpq URL

    def __init__(self, kind: str, path: str | None = None, conninfo: str = "") -> None:
        self.kind = kind
        self.path = path
        self.conninfo = conninfo

    @property
    def sqlalchemy_url(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        return "postgresql+psycopg://" + self.conninfo.split("://", 1)[1]

    def display(self) -> str:
        """The URL without a password, for messages."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        head, _, rest = self.conninfo.partition("://")
        creds, at, host = rest.rpartition("@")
        if at and ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{head}://{creds}{at}{host}"


def parse_catalog_url(url: str) -> CatalogURL:
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"bad SQLite catalog URL {url!r}: use sqlite:////absolute/path.db")
        return CatalogURL("sqlite", path=absolute_path(rest[1:]))
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return CatalogURL("postgresql", conninfo="postgresql://" + url[len(prefix) :])
    if "://" in url:
        raise ConfigError(
            f"unsupported catalog URL {url.split('://')[0]}://…: use sqlite:////path or postgresql://…"
        )
    return CatalogURL("sqlite", path=absolute_path(url))
