"""Catalog URL forms, shared by the SQLAlchemy catalog and the lean hot-path access.

Accepted: ``sqlite:////abs/path.db``, ``sqlite:///rel/path.db``, a bare file path
(SQLite), ``postgresql://…`` / ``postgres://…`` / ``postgresql+psycopg://…``.
"""

from __future__ import annotations

import re

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

    def __repr__(self) -> str:
        return f"CatalogURL({self.display()!r})"

    def display(self) -> str:
        """The URL without a password, for messages."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        return redact_conninfo(self.conninfo)


# libpq keywords whose value is a secret: password, sslpassword
_SECRET_KEY = r"[A-Za-z_]*password"
# a key/value connection string (host=… dbname=…) rather than a file path
_CONNINFO_KEYS = ("host", "hostaddr", "port", "dbname", "user", "password", "service")


def redact_conninfo(text: str) -> str:
    """A libpq connection string, URL or key/value form, with every password replaced by
    ``***``: ``user:pw@`` in a URL, ``password=`` (and ``sslpassword=``) in a URL's query
    or among key/value settings (quoted values included). For messages and listings: it
    rather hides too much (everything up to the last ``@``) than too little."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        head, _, rest = text.partition("://")
        creds, at, tail = rest.rpartition("@")
        if at and ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return re.sub(rf"(?i)([?&]{_SECRET_KEY}=)[^&]*", r"\1***", f"{head}://{creds}{at}{tail}")
    return re.sub(rf"(?i)(\b{_SECRET_KEY}\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", r"\1***", text)


def strip_password(url: str) -> tuple[str, bool]:
    """A PostgreSQL URL without its password (``user:pw@`` and ``password=`` query
    settings), and whether it had one: what may be written into a command line, the
    password then coming from ~/.pgpass, PGPASSFILE or a service file."""
    head, _, rest = url.partition("://")
    end = rest.find("/") if "/" in rest else len(rest)
    # libpq: the user info ends at the first "@" before the first "/"; taking the last
    # one hides all of a password with an unencoded "@"
    creds, at, hosts = rest[:end].rpartition("@")
    had = bool(at and ":" in creds)
    main, _, query = (hosts + rest[end:]).partition("?")
    settings = [p for p in query.split("&") if p]
    kept = [p for p in settings if not re.match(rf"(?i){_SECRET_KEY}=", p)]
    query = "&".join(kept)
    user = creds.split(":", 1)[0]
    stripped = f"{head}://{user}{at}{main}{'?' if query else ''}{query}"
    return stripped, had or kept != settings


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
    keys = [part.split()[-1] for part in url.split("=")[:-1] if part.split()]
    if any(k in _CONNINFO_KEYS for k in keys):
        raise ConfigError(
            "the catalog looks like a key/value connection string (host=… dbname=…): "
            "write it as a URL, postgresql://USER@HOST:PORT/DBNAME"
        )
    return CatalogURL("sqlite", path=absolute_path(url))
